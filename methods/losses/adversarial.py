"""FOMM's adversarial losses: least-squares GAN terms and discriminator feature matching.

Each takes the :class:`methods.discriminators.multiscale.MultiScaleDiscriminator` outputs per
scale, ``(feature maps, prediction map)``, and sums over scales:

- generator: ``w * mean((1 - D(G))^2)``;
- feature matching: ``sum_i w_i * mean|F_i(real) - F_i(G)|`` over the discriminator's blocks
  (a block whose weight is 0 is skipped);
- discriminator: ``w * mean((1 - D(real))^2 + D(G)^2)``, on a detached generated frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

ScaleOutputs = Sequence[tuple[Sequence[torch.Tensor], torch.Tensor]]


def generator_gan_loss(generated: ScaleOutputs, weight: float) -> torch.Tensor:
    return sum(weight * (1 - prediction).pow(2).mean() for _, prediction in generated)


def feature_matching_loss(real: ScaleOutputs, generated: ScaleOutputs, weights: Sequence[float]) -> torch.Tensor:
    total = 0
    for (features_real, _), (features_generated, _) in zip(real, generated, strict=True):
        if len(weights) < len(features_real):
            raise ValueError(
                f"feature_matching has {len(weights)} weights for {len(features_real)} discriminator blocks"
            )
        for w, a, b in zip(weights, features_real, features_generated, strict=False):
            if w != 0:
                total = total + w * (a - b).abs().mean()
    return total


def discriminator_gan_loss(real: ScaleOutputs, generated: ScaleOutputs, weight: float) -> torch.Tensor:
    return sum(
        weight * ((1 - p_real).pow(2) + p_generated.pow(2)).mean()
        for (_, p_real), (_, p_generated) in zip(real, generated, strict=True)
    )
