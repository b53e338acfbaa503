"""Dense motion from K global transforms plus a background transform (TPSMM, reused by CPAB).

The network sees, at a reduced resolution, the source warped by each of the K+1 candidate
transforms (background first) and the keypoint heatmap differences, and predicts with an
hourglass (affine instance norm) per-pixel softmax weights over the transforms (TPSMM Eq. 6: the
optical flow is their weighted sum) and occlusion masks at several resolutions (one per
inpainting-network level; ``multi_mask=False`` gives the single mask of the Table-4 ablation).

Module and parameter names follow the TPSMM reference so its released checkpoints load strictly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from methods.blocks import (
    AntiAliasInterpolation2d,
    FewOutputConv2d,
    Hourglass,
    UpBlock2d,
    kp2gaussian,
    make_coordinate_grid,
)
from methods.detectors.resnet_keypoints import POINTS_PER_TPS
from methods.motion.tps import fit_tps

#: Tikhonov term TPSMM adds to its TPS systems (see :func:`methods.motion.tps.fit_tps`).
TPS_REGULARIZATION = 0.01


def dropout_softmax(
    logits: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Softmax over dim 1 with each foreground transform dropped with probability ``p`` (Eq. 7-8).

    One draw per (sample, transform), shared by all pixels; the background (index 0) is never
    dropped. Dropped transforms get weight 0 and the rest renormalise. As in the reference code,
    the kept weights are not rescaled by ``1 / (1 - p)`` (its rescaling line has no effect on
    the result), and ``1e-6`` in the partition keeps an all-dropped pixel finite.
    """
    gen_device = generator.device if generator is not None else "cpu"
    keep = torch.rand(logits.shape[:2], generator=generator, device=gen_device) < (1 - p)
    keep = keep.to(logits.device)
    keep[:, 0] = True
    shifted = (logits - logits.max(1, keepdim=True).values).exp()
    shifted = shifted * keep[:, :, None, None].to(logits.dtype)
    return shifted / (shifted.sum(1, keepdim=True) + 1e-6)


class DenseMotionNetwork(nn.Module):
    """Flow + multi-resolution occlusion masks from K TPS transforms (or given grids).

    ``num_occlusion_masks`` masks are produced, the first at the lowest resolution, the last at
    full input resolution; mask ``j`` has size ``input / 2**(num_occlusion_masks - 1 - j)``. The
    reference fixes it to 4 (an inpainting network with 3 down blocks).

    ``num_tps`` sets the keypoint groups (``num_tps * 5`` heatmaps). ``num_transforms`` (default
    ``num_tps``) is the number of foreground transforms combined with the background one; CPAB
    passes ``num_cpab + 1`` (N local + 1 global) and supplies their grids through
    ``foreground_grids``, as its release's network (same module names) does.
    """

    def __init__(
        self,
        block_expansion: int,
        num_blocks: int,
        max_features: int,
        num_tps: int,
        num_channels: int,
        scale_factor: float = 0.25,
        bg: bool = False,
        multi_mask: bool = True,
        kp_variance: float = 0.01,
        num_occlusion_masks: int = 4,
        align_corners: bool = True,
        num_transforms: int | None = None,
    ) -> None:
        super().__init__()
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)
        self.scale_factor = scale_factor
        self.multi_mask = multi_mask
        self.num_tps = num_tps
        self.num_transforms = num_tps if num_transforms is None else int(num_transforms)
        self.bg = bg
        self.kp_variance = kp_variance
        self.align_corners = align_corners

        in_features = num_channels * (self.num_transforms + 1) + num_tps * POINTS_PER_TPS + 1
        self.hourglass = Hourglass(
            block_expansion, in_features, num_blocks, max_features, norm_layer=nn.InstanceNorm2d
        )
        levels = self.hourglass.level_filters
        self.maps = nn.Conv2d(levels[-1], self.num_transforms + 1, kernel_size=7, padding=3)

        if multi_mask:
            # masks finer than the flow come from extra up blocks, coarser ones from the decoder
            self.up_nums = int(round(math.log2(1 / scale_factor)))
            self.occlusion_num = num_occlusion_masks
            from_decoder = self.occlusion_num - self.up_nums
            if not 0 <= from_decoder <= len(levels):
                raise ValueError(
                    f"{num_occlusion_masks} occlusion masks need between {self.up_nums} and "
                    f"{self.up_nums + len(levels)} levels; got num_blocks={num_blocks}, "
                    f"scale_factor={scale_factor}"
                )
            up_channels = [levels[-1] // 2**i for i in range(self.up_nums)]
            self.up = nn.ModuleList(
                UpBlock2d(c, c // 2, norm_layer=nn.InstanceNorm2d) for c in up_channels
            )
            mask_channels = levels[len(levels) - from_decoder :] + [c // 2 for c in up_channels]
        else:
            mask_channels = [levels[-1]]
        self.occlusion = nn.ModuleList(
            FewOutputConv2d(c, 1, kernel_size=7, padding=3) for c in mask_channels
        )

    def heatmap_representation(
        self, spatial_size: torch.Size, kp_driving: torch.Tensor, kp_source: torch.Tensor
    ) -> torch.Tensor:
        """Gaussian(driving) - Gaussian(source) per keypoint, a zero map for the background."""
        heatmap = kp2gaussian(kp_driving, spatial_size, self.kp_variance) - kp2gaussian(
            kp_source, spatial_size, self.kp_variance
        )
        return torch.cat([torch.zeros_like(heatmap[:, :1]), heatmap], dim=1)

    def tps_grids(
        self, spatial_size: torch.Size, kp_driving: torch.Tensor, kp_source: torch.Tensor
    ) -> torch.Tensor:
        """(B, K, H, W, 2) grids: TPS k maps driving keypoints of group k onto the source's."""
        bs = kp_driving.shape[0]
        tps = fit_tps(
            kp_driving.view(bs, self.num_tps, POINTS_PER_TPS, 2),
            kp_source.view(bs, self.num_tps, POINTS_PER_TPS, 2),
            regularization=TPS_REGULARIZATION,
        )
        return tps.grid(spatial_size)

    @staticmethod
    def background_grid(
        spatial_size: torch.Size, bg_param: torch.Tensor | None, batch_size: int, like: torch.Tensor
    ) -> torch.Tensor:
        """(B, 1, H, W, 2): identity, or the background affine applied to it."""
        h, w = spatial_size
        grid = make_coordinate_grid((h, w), like.dtype, like.device).view(1, 1, h, w, 2)
        if bg_param is None:
            return grid.expand(batch_size, 1, h, w, 2)
        homogeneous = torch.cat([grid, torch.ones_like(grid[..., :1])], dim=-1)
        moved = homogeneous @ bg_param.view(batch_size, 1, 1, 3, 3).transpose(-1, -2)
        return moved[..., :2] / moved[..., 2:3]

    def forward(
        self,
        source_image: torch.Tensor,
        kp_driving: dict[str, torch.Tensor],
        kp_source: dict[str, torch.Tensor],
        bg_param: torch.Tensor | None = None,
        dropout_p: float | None = None,
        foreground_grids: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Flow ``deformation`` (B, h, w, 2) at the reduced resolution, ``contribution_maps``,
        ``deformed_source`` and ``occlusion_map`` (a list, coarsest first).

        ``foreground_grids`` (B, K, h, w, 2) replaces the TPS grids (CPAB; K = ``num_transforms``);
        keypoints are still needed for the heatmaps. A ``dropout_p`` (even 0) turns on TPS dropout.
        """
        if self.scale_factor != 1:
            source_image = self.down(source_image)
        bs, _, h, w = source_image.shape
        size = source_image.shape[2:]
        fg_driving, fg_source = kp_driving["fg_kp"], kp_source["fg_kp"]

        heatmap = self.heatmap_representation(size, fg_driving, fg_source)
        if foreground_grids is None:
            if self.num_transforms != self.num_tps:
                raise ValueError(
                    f"this network combines {self.num_transforms} foreground transforms, not "
                    f"{self.num_tps} TPS: pass their grids as foreground_grids"
                )
            foreground_grids = self.tps_grids(size, fg_driving, fg_source)
        if foreground_grids.shape[1] != self.num_transforms:
            raise ValueError(
                f"foreground_grids has {foreground_grids.shape[1]} transforms, the network "
                f"expects {self.num_transforms}"
            )
        transformations = torch.cat(
            [self.background_grid(size, bg_param, bs, source_image), foreground_grids], dim=1
        )  # (B, K+1, h, w, 2)
        n = transformations.shape[1]
        deformed = F.grid_sample(
            source_image.repeat_interleave(n, dim=0),
            transformations.reshape(bs * n, h, w, 2),
            align_corners=self.align_corners,
        ).view(bs, n, -1, h, w)

        levels = self.hourglass.forward_levels(
            torch.cat([heatmap, deformed.view(bs, -1, h, w)], dim=1)
        )
        logits = self.maps(levels[-1])
        if dropout_p is not None:
            contribution = dropout_softmax(logits, dropout_p, generator)
        else:
            contribution = F.softmax(logits, dim=1)
        deformation = (transformations * contribution[..., None]).sum(dim=1)

        if self.multi_mask:
            from_decoder = self.occlusion_num - self.up_nums
            features = levels[len(levels) - from_decoder :]
            feature = levels[-1]
            for up in self.up:
                feature = up(feature)
                features.append(feature)
        else:
            features = [levels[-1]]
        occlusion = [torch.sigmoid(conv(f)) for conv, f in zip(self.occlusion, features, strict=True)]
        return {
            "deformed_source": deformed,
            "contribution_maps": contribution,
            "deformation": deformation,
            "occlusion_map": occlusion,
        }
