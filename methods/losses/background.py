"""Background loss (TPSMM Sec. 3.4): the background affine from source to driving and the one
from driving to source must be inverse to each other, ``mean |I - A_sd A_ds|``."""

from __future__ import annotations

import torch


def background_loss(forward_affine: torch.Tensor, backward_affine: torch.Tensor) -> torch.Tensor:
    """Mean absolute deviation of ``forward @ backward`` ((B, 3, 3) each) from the identity."""
    product = forward_affine @ backward_affine
    eye = torch.eye(3, dtype=product.dtype, device=product.device)
    return (eye - product).abs().mean()


def background_active(epoch: int, bg_start: int) -> bool:
    """The background transform (and its loss) is used from epoch ``bg_start`` on (0-based)."""
    return epoch >= bg_start
