"""MRAA background motion predictor: a convolutional encoder of (source, driving) -> one 3x3 matrix."""

from __future__ import annotations

import torch
from torch import nn

from methods.blocks import Encoder

#: Parameters the fully connected head predicts per type, and their identity initialisation.
BG_TYPES: dict[str, tuple[float, ...]] = {
    "zero": (),
    "shift": (0.0, 0.0),
    "affine": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "perspective": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0),
}


class BGMotionPredictor(nn.Module):
    """Global background motion of the driving frame relative to the source, as (B, 3, 3).

    ``bg_type``: ``zero`` (identity, no parameters; MGif), ``shift``, ``affine`` (the default of
    the reference configs) or ``perspective``. The matrix maps homogeneous driving coordinates to
    source coordinates (a backward warp, like every sparse motion). The head starts at the
    identity (zero weights, identity bias) so training begins with a static background.
    """

    def __init__(
        self,
        block_expansion: int,
        num_channels: int,
        max_features: int,
        num_blocks: int,
        bg_type: str = "zero",
    ) -> None:
        super().__init__()
        if bg_type not in BG_TYPES:
            raise ValueError(f"unknown bg_type {bg_type!r}; choose one of {', '.join(BG_TYPES)}")
        self.bg_type = bg_type
        if bg_type != "zero":
            self.encoder = Encoder(block_expansion, 2 * num_channels, num_blocks, max_features)
            width = min(max_features, block_expansion * 2**num_blocks)
            init = torch.tensor(BG_TYPES[bg_type])
            self.fc = nn.Linear(width, len(init))
            with torch.no_grad():
                self.fc.weight.zero_()
                self.fc.bias.copy_(init)

    def forward(self, source_image: torch.Tensor, driving_image: torch.Tensor) -> torch.Tensor:
        b = source_image.shape[0]
        eye = torch.eye(3, dtype=source_image.dtype, device=source_image.device).expand(b, 3, 3)
        if self.bg_type == "zero":
            return eye.clone()
        features = self.encoder(torch.cat([source_image, driving_image], dim=1))[-1]
        params = self.fc(features.mean(dim=(2, 3)))
        if self.bg_type == "shift":
            top = torch.cat([eye[:, :2, :2], params.view(b, 2, 1)], dim=2)
            return torch.cat([top, eye[:, 2:]], dim=1)
        top = params[:, :6].view(b, 2, 3)
        bottom = eye[:, 2:] if self.bg_type == "affine" else torch.cat([params[:, 6:].view(b, 1, 2), eye[:, 2:, 2:]], dim=2)
        return torch.cat([top, bottom], dim=1)
