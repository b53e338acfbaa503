"""Multi-scale perceptual reconstruction loss (FOMM, MRAA, TPSMM, CPAB).

``perceptual_loss`` is a config value:

* ``vgg19`` - the reference loss: L1 between VGG-19 activations (relu1_1, relu2_1, relu3_1,
  relu4_1, relu5_1) of prediction and target, ImageNet-normalised, at every pyramid scale;
  layer ``i`` weighted by ``weights[i]``. Needs the torchvision ImageNet weights file; a missing
  file raises :class:`data_prep.weights.MissingWeightsError` (never a silent fallback).
* ``pixel_pyramid`` - an explicitly different, weight-free loss for demos: L1 between the image
  pyramids themselves. The raw pixels stand in for all five feature levels, so each scale is
  weighted by ``sum(weights)`` exactly as a scale's five VGG terms would be.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torchvision.models import vgg19

from data_prep.weights import DEFAULT_WEIGHTS_DIR, resolve
from methods.blocks import AntiAliasInterpolation2d

PERCEPTUAL_LOSSES = ("vgg19", "pixel_pyramid")

# features[a:b] of torchvision's VGG-19 ending at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
VGG19_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImagePyramid(nn.Module):
    """Anti-aliased downscaled copies of an image, one per scale (scale 1 is the image)."""

    def __init__(self, scales: Sequence[float], num_channels: int) -> None:
        super().__init__()
        self.scales = [float(s) for s in scales]
        self.downs = nn.ModuleList(AntiAliasInterpolation2d(num_channels, s) for s in self.scales)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [down(x) for down in self.downs]


class Vgg19Features(nn.Module):
    """Frozen VGG-19 returning the five activations used by the perceptual loss."""

    def __init__(self, weights_path: str | Path) -> None:
        super().__init__()
        net = vgg19(weights=None)
        net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        self.slices = nn.ModuleList(net.features[a:b] for a, b in VGG19_SLICES)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Vgg19Features:
        # VGG-19 has no dropout/BN in ``features``; keep it in eval regardless of the parent
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        h = (x - self.mean) / self.std
        for block in self.slices:
            h = block(h)
            out.append(h)
        return out


class PyramidPerceptualLoss(nn.Module):
    """Weighted multi-scale reconstruction loss; ``kind`` is ``vgg19`` or ``pixel_pyramid``."""

    def __init__(
        self,
        kind: str,
        scales: Sequence[float],
        weights: Sequence[float],
        num_channels: int = 3,
        weights_dir: str | Path = DEFAULT_WEIGHTS_DIR,
    ) -> None:
        super().__init__()
        if kind not in PERCEPTUAL_LOSSES:
            raise ValueError(
                f"unknown perceptual_loss {kind!r}; choose one of {', '.join(PERCEPTUAL_LOSSES)}"
            )
        self.kind = kind
        self.weights = [float(w) for w in weights]
        self.pyramid = ImagePyramid(scales, num_channels)
        if kind == "vgg19":
            if len(self.weights) != len(VGG19_SLICES):
                raise ValueError(
                    f"vgg19 perceptual loss needs {len(VGG19_SLICES)} layer weights, got {len(self.weights)}"
                )
            self.vgg: Vgg19Features | None = Vgg19Features(resolve("vgg19", weights_dir))
        else:
            self.vgg = None

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = prediction.new_zeros(())
        for pred_s, target_s in zip(self.pyramid(prediction), self.pyramid(target), strict=True):
            if self.vgg is None:
                total = total + sum(self.weights) * (pred_s - target_s.detach()).abs().mean()
                continue
            for weight, a, b in zip(
                self.weights, self.vgg(pred_s), self.vgg(target_s), strict=True
            ):
                total = total + weight * (a - b.detach()).abs().mean()
        return total

