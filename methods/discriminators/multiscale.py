"""FOMM's multi-scale patch discriminator (Siarohin et al., NeurIPS 2019, Sec. 3.4 / sup. mat.).

A pix2pix-style stack of 4x4 convolutions (no padding) with LeakyReLU(0.2), instance norm after
every block but the first and 2x2 average pooling after every block but the last, ending in a
1x1 convolution to one channel: a map of per-patch scores. One such network per scale of the
image pyramid (FOMM's configs use scale 1 only). With ``use_kp`` the driving keypoints, as
gaussian heatmaps, are concatenated to the image (the released ``vox-adv``/``taichi-adv``);
with ``sn`` every convolution carries spectral normalisation (the ``mgif`` config).

Parameter names (``discs.<scale>.down_blocks.<i>.conv``/``.norm``, ``discs.<scale>.conv``) are the
released checkpoints' keys, so a ``discriminator`` entry loads with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from methods.blocks import kp2gaussian
from methods.losses.perceptual import ImagePyramid


def _conv(in_channels: int, out_channels: int, kernel_size: int, sn: bool) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size)
    # the original spectral_norm (not the parametrization API): its buffers are named
    # weight_orig / weight_u / weight_v, as in the released mgif checkpoint
    return nn.utils.spectral_norm(conv) if sn else conv


class DiscriminatorBlock(nn.Module):
    """conv 4x4 (valid) -> [instance norm] -> LeakyReLU(0.2) -> [avg pool 2x2]."""

    def __init__(self, in_channels: int, out_channels: int, norm: bool, pool: bool, sn: bool) -> None:
        super().__init__()
        self.conv = _conv(in_channels, out_channels, 4, sn)
        self.norm = nn.InstanceNorm2d(out_channels, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        x = F.leaky_relu(x, 0.2)
        return F.avg_pool2d(x, 2) if self.pool else x


class PatchDiscriminator(nn.Module):
    """Per-patch real/fake scores of one scale, and the feature map of every block."""

    def __init__(
        self,
        num_channels: int = 3,
        block_expansion: int = 64,
        num_blocks: int = 4,
        max_features: int = 512,
        sn: bool = False,
        use_kp: bool = False,
        num_kp: int = 10,
        kp_variance: float = 0.01,
    ) -> None:
        super().__init__()
        self.use_kp = use_kp
        self.kp_variance = kp_variance
        blocks = []
        in_channels = num_channels + (num_kp if use_kp else 0)
        for i in range(num_blocks):
            out_channels = min(max_features, block_expansion * 2 ** (i + 1))
            blocks.append(DiscriminatorBlock(in_channels, out_channels, norm=i > 0, pool=i < num_blocks - 1, sn=sn))
            in_channels = out_channels
        self.down_blocks = nn.ModuleList(blocks)
        self.conv = _conv(in_channels, 1, 1, sn)

    def forward(self, image: torch.Tensor, kp: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = image
        if self.use_kp:
            if kp is None:
                raise ValueError("this discriminator (use_kp) needs the driving keypoints")
            x = torch.cat([x, kp2gaussian(kp, image.shape[2:], self.kp_variance)], dim=1)
        features = []
        for block in self.down_blocks:
            x = block(x)
            features.append(x)
        return features, self.conv(x)


def scale_key(scale: float) -> str:
    """A scale's name among the sub-networks: ``1`` -> ``"1"``, ``0.5`` -> ``"0-5"`` (the
    checkpoints' keys, written the way Python prints the config's number)."""
    return str(scale).replace(".", "-")


class MultiScaleDiscriminator(nn.Module):
    """One :class:`PatchDiscriminator` per scale.

    ``forward(levels, kp)`` takes the image at every scale (``pyramid(image)``, in the order of
    ``scales``) and returns, per scale, ``(feature maps, prediction map)``. The pyramid is not a
    sub-module, so the state dict holds the discriminators only, as the releases' does.
    """

    def __init__(self, scales: Sequence[float] = (1,), num_channels: int = 3, **params) -> None:
        super().__init__()
        self.scales = [float(s) for s in scales]
        self.discs = nn.ModuleDict(
            {scale_key(s): PatchDiscriminator(num_channels=num_channels, **params) for s in scales}
        )

    def pyramid(self, num_channels: int = 3) -> ImagePyramid:
        """The anti-aliased pyramid whose levels :meth:`forward` takes."""
        return ImagePyramid(self.scales, num_channels)

    def forward(
        self, levels: Sequence[torch.Tensor], kp: torch.Tensor | None = None
    ) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
        return [disc(level, kp) for disc, level in zip(self.discs.values(), levels, strict=True)]
