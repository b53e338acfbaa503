"""First-order sparse motion of FOMM (paper Eq. 4).

Near keypoint k, a driving-frame coordinate z maps to the source frame as
``T(z) = p_s + J_s J_d^{-1} (z - p_d)``; the background motion is the identity. All grids are
backward warps (driving -> source) in ``grid_sample`` coordinates, x first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from methods.blocks import make_coordinate_grid

Keypoints = dict[str, torch.Tensor]


def sparse_motions(
    kp_source: Keypoints, kp_driving: Keypoints, spatial_size: tuple[int, int]
) -> torch.Tensor:
    """(B, K+1, H, W, 2) sampling grids: index 0 is the identity, then one per keypoint.

    Jacobians are used when both dicts carry ``jacobian``.
    """
    value_s, value_d = kp_source["value"], kp_driving["value"]
    b, k, _ = value_d.shape
    identity = make_coordinate_grid(spatial_size, value_s.dtype, value_s.device)  # (H, W, 2)
    rel = identity[None, None] - value_d[:, :, None, None, :]  # (B, K, H, W, 2)
    if "jacobian" in kp_driving and "jacobian" in kp_source:
        jac = kp_source["jacobian"] @ torch.inverse(kp_driving["jacobian"])  # (B, K, 2, 2)
        rel = torch.einsum("bkij,bkhwj->bkhwi", jac, rel)
    per_kp = rel + value_s[:, :, None, None, :]
    background = identity[None, None].expand(b, 1, *identity.shape)
    return torch.cat([background, per_kp], dim=1)


def warp_with_motions(
    image: torch.Tensor, motions: torch.Tensor, align_corners: bool
) -> torch.Tensor:
    """Warp (B, C, H, W) by each of the (B, M, H, W, 2) grids -> (B, M, C, H, W)."""
    b, m, h, w, _ = motions.shape
    c = image.shape[1]
    repeated = (
        image.unsqueeze(1).expand(b, m, c, *image.shape[2:]).reshape(b * m, c, *image.shape[2:])
    )
    warped = F.grid_sample(repeated, motions.reshape(b * m, h, w, 2), align_corners=align_corners)
    return warped.reshape(b, m, c, h, w)
