"""MRAA pixel-wise flow predictor: combines the K region motions and the background motion."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods.blocks import AntiAliasInterpolation2d, FewOutputConv2d, Hourglass
from methods.motion.affine import warp_with_motions
from methods.motion.pca import Regions, region_gaussian, region_motions


class PixelwiseFlowPredictor(nn.Module):
    """Hourglass over [heatmap difference, deformed source] per motion -> softmax mask -> flow.

    Works at ``scale_factor`` of the input resolution. Heatmaps are gaussians of variance
    ``region_var`` or, with ``use_covar_heatmap``, of each region's covariance (paper Eq. 6).
    Output dict: ``optical_flow`` (B, h, w, 2), ``mask`` (B, K+1, h, w), ``sparse_deformed``
    (B, K+1, C, h, w) and, when enabled, ``occlusion_map`` (B, 1, h, w).
    """

    def __init__(
        self,
        block_expansion: int,
        num_blocks: int,
        max_features: int,
        num_regions: int,
        num_channels: int,
        estimate_occlusion_map: bool = False,
        scale_factor: float = 1,
        region_var: float = 0.01,
        use_covar_heatmap: bool = False,
        use_deformed_source: bool = True,
        revert_axis_swap: bool = False,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.num_regions = num_regions
        self.scale_factor = scale_factor
        self.region_var = region_var
        self.use_covar_heatmap = use_covar_heatmap
        self.use_deformed_source = use_deformed_source
        self.revert_axis_swap = revert_axis_swap
        self.align_corners = align_corners
        per_motion = 1 + (num_channels if use_deformed_source else 0)
        self.hourglass = Hourglass(block_expansion, (num_regions + 1) * per_motion, num_blocks, max_features)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_regions + 1, kernel_size=(7, 7), padding=(3, 3))
        if estimate_occlusion_map:
            self.occlusion = FewOutputConv2d(self.hourglass.out_filters, 1, kernel_size=(7, 7), padding=(3, 3))
        else:
            self.occlusion = None
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def heatmap_representation(
        self, spatial_size: tuple[int, int], driving: Regions, source: Regions
    ) -> torch.Tensor:
        """(B, K+1, 1, h, w): driving minus source region heatmaps, zeros for the background."""
        cov_d = driving["covar"] if self.use_covar_heatmap else self.region_var
        cov_s = source["covar"] if self.use_covar_heatmap else self.region_var
        heat = region_gaussian(driving["shift"], cov_d, spatial_size) - region_gaussian(
            source["shift"], cov_s, spatial_size
        )
        return F.pad(heat, (0, 0, 0, 0, 1, 0)).unsqueeze(2)

    def forward(
        self,
        source_image: torch.Tensor,
        driving_region_params: Regions,
        source_region_params: Regions,
        bg_params: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if self.scale_factor != 1:
            source_image = self.down(source_image)
        b, _, h, w = source_image.shape
        heat = self.heatmap_representation((h, w), driving_region_params, source_region_params)
        motions = region_motions(
            source_region_params, driving_region_params, (h, w), bg_params, self.revert_axis_swap
        )
        deformed = warp_with_motions(source_image, motions, self.align_corners)
        inputs = torch.cat([heat, deformed], dim=2) if self.use_deformed_source else heat
        features = self.hourglass(inputs.reshape(b, -1, h, w))

        mask = F.softmax(self.mask(features), dim=1)
        out = {"sparse_deformed": deformed, "mask": mask}
        out["optical_flow"] = torch.einsum("bmhw,bmhwc->bhwc", mask, motions)
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(features))
        return out
