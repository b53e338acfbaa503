"""Gaussian smoothness prior on theta (Freifeld et al., TPAMI 2017, as in libcpab)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from .basis import _basis_np
from .tessellation import Tessellation


@dataclass(frozen=True)
class Prior:
    """Squared-exponential prior over the per-cell affine parameters.

    Parameter slot p of cells i and j has covariance
    ``variance * exp(-|c_i - c_j|^2 / (2 length_scale^2))`` (c = cell centroids, in the
    [-1, 1] domain's units); different slots are independent. Projected onto the basis B
    this gives theta ~ N(0, B^T Sigma_A B). ``length_scale=0.2`` equals libcpab's default
    0.1 on its [0, 1] domain.
    """

    length_scale: float = 0.2
    variance: float = 1.0


@functools.lru_cache(maxsize=64)
def _cov_np(tess: Tessellation, prior: Prior) -> np.ndarray:
    c = tess.cell_centers()
    d2 = ((c[:, None] - c[None]) ** 2).sum(-1)
    k = prior.variance * np.exp(-d2 / (2 * prior.length_scale**2))
    cov_a = np.kron(k, np.eye(6))  # slot-wise independent, matching the flat layout
    b = _basis_np(tess)
    cov = b.T @ cov_a @ b
    return 0.5 * (cov + cov.T)


def prior_covariance(tess: Tessellation, prior: Prior) -> torch.Tensor:
    """(d, d) float64 covariance of theta under ``prior``; cached per (tessellation, prior)."""
    return torch.tensor(_cov_np(tess, prior))  # a copy: the cache stays intact


@functools.lru_cache(maxsize=64)
def _precision_np(tess: Tessellation, prior: Prior) -> np.ndarray:
    return np.linalg.pinv(_cov_np(tess, prior), rcond=1e-12, hermitian=True)


def prior_precision(tess: Tessellation, prior: Prior) -> torch.Tensor:
    """(d, d) float64 pseudo-inverse of :func:`prior_covariance` (for the fit's objective)."""
    return torch.tensor(_precision_np(tess, prior))  # a copy: the cache stays intact


def sample_theta(
    tess: Tessellation, n: int, prior: Prior, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(n, d) float64 draws of theta from the prior."""
    cov = _cov_np(tess, prior)
    w, v = np.linalg.eigh(cov)
    root = torch.as_tensor(v * np.sqrt(np.clip(w, 0, None)))
    z = torch.randn(n, cov.shape[0], dtype=torch.float64, generator=generator)
    return z @ root.T
