"""TPSMM's inpainting network: an encoder-decoder whose skip features are warped by the flow and
masked by the occlusion mask of their resolution; the final image blends the warped source
(visible parts) with the decoder's output (occluded parts, "inpainted").

Module names follow the TPSMM reference so its released checkpoints load strictly.
"""

from __future__ import annotations

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


class InpaintingNetwork(nn.Module):
    """Source image + dense motion -> ``prediction`` (B, C, H, W) in [0, 1].

    With ``multi_mask`` the dense motion supplies ``num_down_blocks + 1`` occlusion masks, one
    per level (coarsest first, the last at full resolution); without it one mask is resized to
    every level.
    """

    def __init__(
        self,
        num_channels: int,
        block_expansion: int,
        max_features: int,
        num_down_blocks: int,
        multi_mask: bool = True,
        align_corners: bool = True,
    ) -> None:
        super().__init__()
        self.num_down_blocks = num_down_blocks
        self.multi_mask = multi_mask
        self.align_corners = align_corners
        self.num_channels = num_channels
        norm = nn.InstanceNorm2d
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3, norm_layer=norm)

        down_blocks, up_blocks, resblock = [], [], []
        for i in range(num_down_blocks):
            in_features = min(max_features, block_expansion * 2**i)
            out_features = min(max_features, block_expansion * 2 ** (i + 1))
            down_blocks.append(DownBlock2d(in_features, out_features, norm_layer=norm))
            # every decoder level but the deepest also sees the warped skip of its resolution
            decoder_in = out_features if i == num_down_blocks - 1 else 2 * out_features
            up_blocks.append(UpBlock2d(decoder_in, in_features, norm_layer=norm))
            resblock.append(ResBlock2d(decoder_in, norm_layer=norm))
            resblock.append(ResBlock2d(decoder_in, norm_layer=norm))
        self.down_blocks = nn.ModuleList(down_blocks)
        self.up_blocks = nn.ModuleList(up_blocks[::-1])
        self.resblock = nn.ModuleList(resblock[::-1])
        self.final = FewOutputConv2d(block_expansion, num_channels, kernel_size=7, padding=3)

    def deform_input(self, inp: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
        """Warp ``inp`` by the flow, resized (bilinearly) to ``inp``'s resolution if needed."""
        if deformation.shape[1:3] != inp.shape[2:]:
            deformation = F.interpolate(
                deformation.permute(0, 3, 1, 2),
                size=inp.shape[2:],
                mode="bilinear",
                align_corners=self.align_corners,
            ).permute(0, 2, 3, 1)
        return F.grid_sample(inp, deformation, align_corners=self.align_corners)

    def occlude_input(self, inp: torch.Tensor, occlusion_map: torch.Tensor) -> torch.Tensor:
        if occlusion_map.shape[2:] != inp.shape[2:]:
            occlusion_map = F.interpolate(
                occlusion_map, size=inp.shape[2:], mode="bilinear", align_corners=self.align_corners
            )
        return inp * occlusion_map

    def _mask(self, masks: list[torch.Tensor], level: int) -> torch.Tensor:
        """Occlusion mask for decoder level ``level`` (0 = deepest)."""
        return masks[level] if self.multi_mask else masks[0]

    def encode(self, source_image: torch.Tensor) -> list[torch.Tensor]:
        """The source's encoder features, finest first; they depend on the source alone."""
        return encoder_levels(self.first, self.down_blocks, source_image)

    def forward(
        self,
        source_image: torch.Tensor,
        dense_motion: dict,
        warp_features: bool = True,
        encoded: list[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """``warp_features`` also returns ``warped_encoder_maps`` (the warp loss's input):
        the warped, masked encoder features computed with detached features and masks, so that
        the warp loss trains only the flow. ``encoded``: :meth:`encode` of ``source_image``,
        when the caller computed it once for many driving frames."""
        encoder_map = encoded if encoded is not None else self.encode(source_image)
        out = encoder_map[-1]

        masks = dense_motion["occlusion_map"]
        deformation = dense_motion["deformation"]
        warped_maps: list[torch.Tensor] = []

        if warp_features:
            warped_maps.append(
                self.occlude_input(self.deform_input(out.detach(), deformation), masks[0].detach())
            )
        out = self.occlude_input(self.deform_input(out, deformation), masks[0])

        skip = out
        for i in range(self.num_down_blocks):
            out = self.resblock[2 * i](out)
            out = self.resblock[2 * i + 1](out)
            out = self.up_blocks[i](out)
            feature = encoder_map[-(i + 2)]
            mask = self._mask(masks, i + 1)
            if warp_features:
                warped_maps.append(
                    self.occlude_input(self.deform_input(feature.detach(), deformation), mask.detach())
                )
            skip = self.occlude_input(self.deform_input(feature, deformation), mask)
            if i < self.num_down_blocks - 1:
                out = torch.cat([out, skip], dim=1)

        deformed_source = self.deform_input(source_image, deformation)
        last = masks[-1]
        if last.shape[2:] != out.shape[2:]:
            last = F.interpolate(last, size=out.shape[2:], mode="bilinear", align_corners=self.align_corners)
        # decoder output fills what the mask hides; the warped skip and source fill the rest
        out = out * (1 - last) + skip
        out = torch.sigmoid(self.final(out))
        out = out * (1 - last) + deformed_source * last

        result = {
            "prediction": out,
            "deformed": deformed_source,
            "deformation": deformation,
            "occlusion_map": masks,
            "contribution_maps": dense_motion["contribution_maps"],
            "deformed_source": dense_motion["deformed_source"],
        }
        if warp_features:
            result["warped_encoder_maps"] = warped_maps
        return result

    def encode_driving(self, driving: torch.Tensor, masks: list[torch.Tensor]) -> list[torch.Tensor]:
        """The driving frame's encoder features, each masked by its level's occlusion mask,
        finest first, all detached: the targets of the warp loss (TPSMM Sec. 3.4)."""
        out = self.first(driving)
        features = [self.occlude_input(out.detach(), masks[-1].detach())]
        for i, block in enumerate(self.down_blocks):
            out = block(out.detach())
            mask = self._mask(masks, self.num_down_blocks - 1 - i)
            features.append(self.occlude_input(out.detach(), mask.detach()).detach())
        return features
