"""Background motion as one affine transform per frame pair (TPSMM; ResNet-18, 6-channel input).

The source and driving frames are stacked channel-wise and a ResNet-18 regresses the six affine
parameters. The last layer starts at zero weight and identity bias, so an untrained predictor
says "the background did not move". ``bg_encoder`` is the released checkpoints' key prefix.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.detectors.resnet_keypoints import ResNet18


class ResNetAffine(nn.Module):
    """(source, driving) -> (B, 3, 3) homogeneous affine, bottom row ``[0, 0, 1]``.

    The matrix maps driving-frame coordinates to source-frame coordinates (it is applied to the
    identity grid that samples the source).
    """

    def __init__(self, num_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        self.bg_encoder = ResNet18(6, 2 * num_channels, width)
        with torch.no_grad():
            self.bg_encoder.fc.weight.zero_()
            self.bg_encoder.fc.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0]))

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        affine = self.bg_encoder(torch.cat([source, driving], dim=1)).view(-1, 2, 3)
        bottom = torch.tensor([0.0, 0.0, 1.0], dtype=affine.dtype, device=affine.device)
        return torch.cat([affine, bottom.expand(affine.shape[0], 1, 3)], dim=1)
