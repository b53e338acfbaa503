"""FOMM dense motion network: combines the K+1 sparse motions into one dense backward warp."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods.blocks import AntiAliasInterpolation2d, FewOutputConv2d, Hourglass, kp2gaussian
from methods.motion.affine import Keypoints, sparse_motions, warp_with_motions


class DenseMotionNetwork(nn.Module):
    """Hourglass over [heatmap difference, deformed source] per motion -> softmax mask -> deformation.

    Works at ``scale_factor`` of the input resolution. Output dict: ``deformation`` (B, h, w, 2),
    ``mask`` (B, K+1, h, w), ``sparse_deformed`` (B, K+1, C, h, w) and, when enabled,
    ``occlusion_map`` (B, 1, h, w).
    """

    def __init__(
        self,
        block_expansion: int,
        num_blocks: int,
        max_features: int,
        num_kp: int,
        num_channels: int,
        estimate_occlusion_map: bool = False,
        scale_factor: float = 1,
        kp_variance: float = 0.01,
        align_corners: bool = True,
    ) -> None:
        super().__init__()
        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        self.align_corners = align_corners
        # per motion: 1 heatmap channel followed by the C channels of the deformed source
        self.hourglass = Hourglass(
            block_expansion, (num_kp + 1) * (num_channels + 1), num_blocks, max_features
        )
        self.mask = nn.Conv2d(
            self.hourglass.out_filters, num_kp + 1, kernel_size=(7, 7), padding=(3, 3)
        )
        if estimate_occlusion_map:
            self.occlusion = FewOutputConv2d(
                self.hourglass.out_filters, 1, kernel_size=(7, 7), padding=(3, 3)
            )
        else:
            self.occlusion = None
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def heatmap_representation(
        self, spatial_size: tuple[int, int], kp_driving: Keypoints, kp_source: Keypoints
    ) -> torch.Tensor:
        """(B, K+1, 1, h, w): driving minus source gaussians, zeros for the background (Eq. 6)."""
        heat = kp2gaussian(kp_driving["value"], spatial_size, self.kp_variance) - kp2gaussian(
            kp_source["value"], spatial_size, self.kp_variance
        )
        heat = F.pad(heat, (0, 0, 0, 0, 1, 0))  # prepend the background channel
        return heat.unsqueeze(2)

    def forward(
        self, source_image: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints
    ) -> dict[str, torch.Tensor]:
        if self.scale_factor != 1:
            source_image = self.down(source_image)
        b, _, h, w = source_image.shape
        heat = self.heatmap_representation((h, w), kp_driving, kp_source)
        motions = sparse_motions(kp_source, kp_driving, (h, w))
        deformed = warp_with_motions(source_image, motions, self.align_corners)
        features = self.hourglass(torch.cat([heat, deformed], dim=2).reshape(b, -1, h, w))

        mask = F.softmax(self.mask(features), dim=1)
        out = {"sparse_deformed": deformed, "mask": mask}
        out["deformation"] = torch.einsum("bmhw,bmhwc->bhwc", mask, motions)
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(features))
        return out
