"""FOMM occlusion-aware generator: encode source, warp features, mask occlusions, decode."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.blocks import (
    DownBlock2d,
    FewOutputConv2d,
    ResBlock2d,
    SameBlock2d,
    UpBlock2d,
    encoder_levels,
)
from methods.dense_motion.keypoint_based import DenseMotionNetwork
from methods.motion.affine import Keypoints


class OcclusionAwareGenerator(nn.Module):
    """Johnson-style encoder/decoder whose bottleneck features are warped by the dense motion.

    Output dict: ``prediction`` (B, C, H, W) in [0, 1] and, with a dense motion network,
    ``deformation``, ``deformed`` (source warped at full resolution), ``mask``,
    ``sparse_deformed`` and ``occlusion_map`` (when estimated).
    """

    def __init__(
        self,
        num_channels: int,
        num_kp: int,
        block_expansion: int,
        max_features: int,
        num_down_blocks: int,
        num_bottleneck_blocks: int,
        estimate_occlusion_map: bool = False,
        dense_motion_params: dict[str, Any] | None = None,
        estimate_jacobian: bool = False,
        align_corners: bool = True,
    ) -> None:
        super().__init__()
        del estimate_jacobian  # the generator uses Jacobians only if the keypoints carry them
        self.num_channels = num_channels
        self.align_corners = align_corners
        if dense_motion_params is not None:
            self.dense_motion_network = DenseMotionNetwork(
                num_kp=num_kp,
                num_channels=num_channels,
                estimate_occlusion_map=estimate_occlusion_map,
                align_corners=align_corners,
                **dense_motion_params,
            )
        else:
            self.dense_motion_network = None

        def width(level: int) -> int:
            return min(max_features, block_expansion * 2**level)

        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3))
        self.down_blocks = nn.ModuleList(
            DownBlock2d(width(i), width(i + 1)) for i in range(num_down_blocks)
        )
        self.up_blocks = nn.ModuleList(
            UpBlock2d(width(num_down_blocks - i), width(num_down_blocks - i - 1))
            for i in range(num_down_blocks)
        )
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(
                f"r{i}", ResBlock2d(width(num_down_blocks), kernel_size=(3, 3), padding=(1, 1))
            )
        self.final = FewOutputConv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))

    def deform_input(self, inp: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
        """Backward-warp ``inp`` with a (B, h, w, 2) grid, resized bilinearly to ``inp``'s size."""
        if deformation.shape[1:3] != inp.shape[2:]:
            deformation = F.interpolate(
                deformation.permute(0, 3, 1, 2), size=inp.shape[2:], mode="bilinear"
            )
            deformation = deformation.permute(0, 2, 3, 1)
        return F.grid_sample(inp, deformation, align_corners=self.align_corners)

    def encode(self, source_image: torch.Tensor) -> list[torch.Tensor]:
        """The source's bottleneck features (one entry), which depend on the source alone."""
        return encoder_levels(self.first, self.down_blocks, source_image)[-1:]

    def forward(
        self,
        source_image: torch.Tensor,
        kp_driving: Keypoints,
        kp_source: Keypoints,
        encoded: list[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``encoded``: :meth:`encode` of ``source_image``, when the caller computed it once
        for many driving frames (reconstruction, animation)."""
        out = (encoded if encoded is not None else self.encode(source_image))[0]

        result: dict[str, torch.Tensor] = {}
        if self.dense_motion_network is not None:
            motion = self.dense_motion_network(
                source_image, kp_driving=kp_driving, kp_source=kp_source
            )
            result.update(motion)
            out = self.deform_input(out, motion["deformation"])
            occlusion = motion.get("occlusion_map")
            if occlusion is not None:
                if occlusion.shape[2:] != out.shape[2:]:
                    occlusion = F.interpolate(occlusion, size=out.shape[2:], mode="bilinear")
                out = out * occlusion
            result["deformed"] = self.deform_input(source_image, motion["deformation"])

        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        result["prediction"] = torch.sigmoid(self.final(out))
        return result
