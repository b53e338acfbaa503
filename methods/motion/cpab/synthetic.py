"""Keypoint problems with smooth, non-CPAB displacements (for tests and the benchmark).

The fit has to explain motions that no CPAB field produces exactly, as keypoint detectors
deliver them. Drawing keypoint motions from the CPAB prior itself (what the benchmark once
did) suits the fit and flatters it; a sum of random low-frequency sinusoids does not.
"""

from __future__ import annotations

import math

import torch

_RMS_GRID = 33  # grid side on which a field's RMS amplitude is measured


def smooth_displacement(
    sets: int,
    points: int,
    amplitude: float,
    generator: torch.Generator,
    waves: int = 4,
    max_frequency: float = 1.5,
    extent: float = 0.9,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Driving keypoints and their displaced sources, one random smooth field per set.

    Driving keypoints are uniform in ``[-extent, extent]^2``. Each set draws a field
    ``u(x) = sum_k c_k sin(pi w_k . x + phi_k)`` with ``waves`` terms, wave vectors
    ``w_k`` uniform in the disc of radius ``max_frequency`` (cycles per half domain, so at
    most 1.5 periods across [-1, 1]), random phases and Gaussian 2-vectors ``c_k``; the field
    is then scaled so that its RMS length over a grid of ``[-extent, extent]^2`` equals
    ``amplitude`` (in [-1, 1] units; the per-set RMS over its few keypoints varies around it).

    Returns:
        (kp_driving, kp_source), both (sets, points, 2) float64, with
        ``kp_source = kp_driving + u(kp_driving)``: the fit looks for T(kp_d) = kp_s.
    """
    f64 = torch.float64
    kd = (torch.rand(sets, points, 2, generator=generator, dtype=f64) * 2 - 1) * extent
    radius = max_frequency * torch.rand(sets, waves, 1, generator=generator, dtype=f64).sqrt()
    angle = 2 * math.pi * torch.rand(sets, waves, 1, generator=generator, dtype=f64)
    w = math.pi * radius * torch.cat([angle.cos(), angle.sin()], -1)  # (S, K, 2)
    phase = 2 * math.pi * torch.rand(sets, waves, generator=generator, dtype=f64)
    coef = torch.randn(sets, waves, 2, generator=generator, dtype=f64)

    def field(x: torch.Tensor) -> torch.Tensor:  # (S, P, 2) -> (S, P, 2)
        s = torch.sin(torch.einsum("spi,ski->spk", x, w) + phase[:, None])
        return torch.einsum("spk,ski->spi", s, coef)

    lin = torch.linspace(-extent, extent, _RMS_GRID, dtype=f64)
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    grid = torch.stack([gx, gy], -1).reshape(1, -1, 2).expand(sets, -1, -1)
    rms = field(grid).square().sum(-1).mean(-1).sqrt()  # (S,)
    scale = amplitude / rms.clamp_min(1e-12)
    return kd, kd + scale[:, None, None] * field(kd)
