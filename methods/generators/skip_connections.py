"""MRAA generator: encoder/decoder whose bottleneck *and* skip features are warped by the flow."""

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
from methods.dense_motion.region_based import PixelwiseFlowPredictor
from methods.motion.pca import Regions


class Generator(nn.Module):
    """Johnson-style generator of MRAA.

    The source is encoded; its bottleneck features are warped by the pixel-wise flow and masked
    by the occlusion map. With ``skips`` every decoder level is blended with the warped encoder
    feature of the same resolution, ``warped * occlusion + decoded * (1 - occlusion)``, and so is
    the final image with the warped source. Output dict: ``prediction`` (B, C, H, W) in [0, 1]
    and, with a flow predictor, ``deformed`` (source warped at full resolution), ``optical_flow``,
    ``mask``, ``sparse_deformed`` and ``occlusion_map`` (when estimated).
    """

    def __init__(
        self,
        num_channels: int,
        num_regions: int,
        block_expansion: int,
        max_features: int,
        num_down_blocks: int,
        num_bottleneck_blocks: int,
        pixelwise_flow_predictor_params: dict[str, Any] | None = None,
        skips: bool = False,
        revert_axis_swap: bool = True,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.skips = skips
        self.align_corners = align_corners
        if pixelwise_flow_predictor_params is not None:
            self.pixelwise_flow_predictor = PixelwiseFlowPredictor(
                num_regions=num_regions,
                num_channels=num_channels,
                revert_axis_swap=revert_axis_swap,
                align_corners=align_corners,
                **pixelwise_flow_predictor_params,
            )
        else:
            self.pixelwise_flow_predictor = None

        def width(level: int) -> int:
            return min(max_features, block_expansion * 2**level)

        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3))
        self.down_blocks = nn.ModuleList(DownBlock2d(width(i), width(i + 1)) for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(
            UpBlock2d(width(num_down_blocks - i), width(num_down_blocks - i - 1))
            for i in range(num_down_blocks)
        )
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(width(num_down_blocks), kernel_size=(3, 3), padding=(1, 1)))
        self.final = FewOutputConv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))

    def deform_input(self, inp: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """Backward-warp ``inp`` with a (B, h, w, 2) grid, resized bilinearly to ``inp``'s size."""
        if flow.shape[1:3] != inp.shape[2:]:
            flow = F.interpolate(flow.permute(0, 3, 1, 2), size=inp.shape[2:], mode="bilinear")
            flow = flow.permute(0, 2, 3, 1)
        return F.grid_sample(inp, flow, align_corners=self.align_corners)

    def apply_optical(
        self,
        skip: torch.Tensor,
        previous: torch.Tensor | None,
        motion: dict[str, torch.Tensor] | None,
    ) -> torch.Tensor:
        """Warp ``skip`` by the flow and blend it with ``previous`` through the occlusion map."""
        if motion is None:
            return previous if previous is not None else skip
        warped = self.deform_input(skip, motion["optical_flow"])
        occlusion = motion.get("occlusion_map")
        if occlusion is None:
            return warped
        if occlusion.shape[2:] != warped.shape[2:]:
            occlusion = F.interpolate(occlusion, size=warped.shape[2:], mode="bilinear")
        if previous is None:
            return warped * occlusion
        return warped * occlusion + previous * (1 - occlusion)

    def encode(self, source_image: torch.Tensor) -> list[torch.Tensor]:
        """The source's encoder features, finest first; they depend on the source alone."""
        return encoder_levels(self.first, self.down_blocks, source_image)

    def forward(
        self,
        source_image: torch.Tensor,
        driving_region_params: Regions,
        source_region_params: Regions,
        bg_params: torch.Tensor | None = None,
        encoded: list[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``encoded``: :meth:`encode` of ``source_image``, when the caller computed it once
        for many driving frames (reconstruction, animation)."""
        skips = encoded if encoded is not None else self.encode(source_image)
        out = skips[-1]

        result: dict[str, torch.Tensor] = {}
        motion = None
        if self.pixelwise_flow_predictor is not None:
            motion = self.pixelwise_flow_predictor(
                source_image, driving_region_params, source_region_params, bg_params=bg_params
            )
            result.update(motion)
            result["deformed"] = self.deform_input(source_image, motion["optical_flow"])

        out = self.apply_optical(out, None, motion)
        out = self.bottleneck(out)
        for i, block in enumerate(self.up_blocks):
            if self.skips:
                out = self.apply_optical(skips[-(i + 1)], out, motion)
            out = block(out)
        if self.skips:
            out = self.apply_optical(skips[0], out, motion)
        out = torch.sigmoid(self.final(out))
        if self.skips:
            out = self.apply_optical(source_image, out, motion)
        result["prediction"] = out
        return result
