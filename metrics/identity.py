"""AED per frame: squared Euclidean distance between identity embeddings (no square root).

Embeddings are compared as the backend returns them (facenet: L2-normalised; torchreid: raw
pooled features; synthetic: L2-normalised), as in the pose-evaluation protocol. A frame whose
embedding is not finite (a backend that could not embed it) is skipped and counted.
"""

from __future__ import annotations

import numpy as np

NO_EMBEDDING = "no identity embedding"


def aed(gt: np.ndarray, generated: np.ndarray) -> dict[str, np.ndarray]:
    """Columns ``aed, aed_skip`` from two ``(T, D)`` embedding arrays."""
    if gt.shape != generated.shape or gt.ndim != 2:
        raise ValueError(f"embeddings must be (T, D) of equal shape; got {gt.shape} and {generated.shape}")
    ok = np.isfinite(gt).all(1) & np.isfinite(generated).all(1)
    with np.errstate(invalid="ignore"):
        value = ((gt - generated) ** 2).sum(1)
    return {"aed": np.where(ok, value, np.nan), "aed_skip": np.where(ok, "", NO_EMBEDDING).astype(object)}
