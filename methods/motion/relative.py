"""Relative-motion geometry, shared by the animation routine and every method's ``relative_motion``.

In relative mode the driving video's motion since its first frame is applied to the source's
motion descriptor, with displacements rescaled by the ratio of the square roots of the source's
and the first driving frame's keypoint convex-hull areas (FOMM Sec. 3.5, MRAA Sec. 3.4). One
movement scale, one dtype (float64 areas), one rule for a degenerate hull (scale 1).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)


def convex_hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of 2D ``points`` (N, 2) (Andrew's monotone chain); 0 if degenerate."""
    pts = np.unique(np.asarray(points, dtype=np.float64).reshape(-1, 2), axis=0)  # sorted by x, y
    if len(pts) < 3:
        return 0.0

    def half(seq: np.ndarray) -> list[np.ndarray]:
        chain: list[np.ndarray] = []
        for p in seq:
            while len(chain) >= 2:
                o, a = chain[-2], chain[-1]
                if (a[0] - o[0]) * (p[1] - o[1]) - (a[1] - o[1]) * (p[0] - o[0]) > 0:
                    break
                chain.pop()
            chain.append(p)
        return chain

    lower, upper = half(pts), half(pts[::-1])
    hull = np.array(lower[:-1] + upper[:-1])
    x, y = hull[:, 0], hull[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def movement_scale(source_points: torch.Tensor, initial_points: torch.Tensor) -> torch.Tensor:
    """Per-sample ``sqrt(area(source hull) / area(initial driving hull))``, shape (B, 1, 1).

    The one movement-scale rule of every method's relative mode (FOMM keypoints, MRAA region
    shifts, TPSMM/CPAB keypoints). The references compute it for sample 0 only (they animate
    one pair at a time); per sample is the same for B = 1, and a batch of 1 on either side is
    broadcast to the other's batch (one source animated by many frames, or the reverse). Areas
    are computed in float64. A degenerate driving hull (area 0) gives scale 1 with a warning,
    where the references would fail inside Qhull.
    """
    src = source_points.detach().double().cpu().numpy()
    init = initial_points.detach().double().cpu().numpy()
    if len(src) != len(init) and 1 in (len(src), len(init)):
        src, init = np.broadcast_arrays(src, init)
    scales = []
    for s, i in zip(src, init, strict=True):
        area_src, area_init = convex_hull_area(s), convex_hull_area(i)
        if area_init <= 1e-12:
            log.warning("initial driving keypoints are collinear; movement scale set to 1")
            scales.append(1.0)
        else:
            scales.append(float(np.sqrt(area_src) / np.sqrt(area_init)))
    return torch.tensor(scales, dtype=source_points.dtype, device=source_points.device).view(-1, 1, 1)


def relative_points(source: torch.Tensor, driving: torch.Tensor, initial: torch.Tensor,
                    scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Source points displaced by the driving points' (scaled) displacement since the first frame."""
    return source + (driving - initial) * scale


def relative_linear(source: torch.Tensor, driving: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """Source 2x2 maps composed with the driving maps' change since the first frame:
    ``A_drv inv(A_init) A_src``."""
    return driving @ torch.linalg.inv(initial) @ source
