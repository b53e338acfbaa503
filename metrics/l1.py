"""L1 reconstruction error per frame: mean |prediction − driving| over pixels and channels in [0, 1]."""

from __future__ import annotations

import numpy as np


def l1_per_frame(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-frame L1 of two uint8 videos (T, H, W, 3); returns (T,) float64."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and ground truth {target.shape} differ in shape")
    diff = np.abs(prediction.astype(np.float64) - target.astype(np.float64)) / 255.0
    return diff.reshape(diff.shape[0], -1).mean(axis=1)
