"""Warp loss (TPSMM Sec. 3.4): the source's encoder features, warped by the predicted flow and
masked by the occlusion masks, should equal the driving frame's encoder features under the same
masks; summed over levels, L1 mean per level."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def warp_loss(driving_features: Sequence[torch.Tensor], warped_features: Sequence[torch.Tensor]) -> torch.Tensor:
    """``driving_features`` finest first, ``warped_features`` coarsest first (as the inpainting
    network produces them); level ``i`` of one is compared with level ``-i-1`` of the other."""
    if len(driving_features) != len(warped_features):
        raise ValueError(
            f"warp loss needs as many driving as warped feature maps, got "
            f"{len(driving_features)} and {len(warped_features)}"
        )
    total = warped_features[0].new_zeros(())
    for target, warped in zip(driving_features, reversed(warped_features), strict=True):
        total = total + (target - warped).abs().mean()
    return total
