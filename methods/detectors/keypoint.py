"""FOMM keypoint detector: hourglass -> per-keypoint heatmap -> soft-argmax (+ local Jacobians)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods.blocks import AntiAliasInterpolation2d, FewOutputConv2d, Hourglass, heatmap_mean


class KPDetector(nn.Module):
    """Predicts ``value`` (B, K, 2) in [-1, 1], x first, and optionally ``jacobian`` (B, K, 2, 2).

    Keypoints are the expectation of the coordinate grid under a softmax heatmap (temperature
    ``temperature``); Jacobians are the heatmap-weighted average of a 4-channel map per keypoint.
    """

    def __init__(
        self,
        block_expansion: int,
        num_kp: int,
        num_channels: int,
        max_features: int,
        num_blocks: int,
        temperature: float,
        estimate_jacobian: bool = False,
        scale_factor: float = 1,
        single_jacobian_map: bool = False,
        pad: int = 0,
    ) -> None:
        super().__init__()
        self.num_kp = num_kp
        self.temperature = temperature
        self.scale_factor = scale_factor
        self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=(7, 7), padding=pad)
        if estimate_jacobian:
            self.num_jacobian_maps = 1 if single_jacobian_map else num_kp
            self.jacobian = FewOutputConv2d(
                self.predictor.out_filters,
                4 * self.num_jacobian_maps,
                kernel_size=(7, 7),
                padding=pad,
            )
            # start from identity Jacobians so early training behaves like the zero-order model
            with torch.no_grad():
                self.jacobian.weight.zero_()
                self.jacobian.bias.copy_(
                    torch.tensor([1.0, 0.0, 0.0, 1.0] * self.num_jacobian_maps)
                )
        else:
            self.jacobian = None
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.scale_factor != 1:
            image = self.down(image)
        features = self.predictor(image)
        logits = self.kp(features)
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.reshape(b, k, h * w) / self.temperature, dim=2)
        out = {"value": heatmap_mean(heatmap.reshape(b, k, h, w))}
        if self.jacobian is not None:
            maps = self.jacobian(features).reshape(b, self.num_jacobian_maps, 4, h * w)
            jac = (heatmap.unsqueeze(2) * maps).sum(-1)
            out["jacobian"] = jac.reshape(b, k, 2, 2)
        return out
