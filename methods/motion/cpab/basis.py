"""Orthonormal basis of the continuous piecewise-affine velocity space, cached in memory."""

from __future__ import annotations

import functools

import numpy as np
import torch

from .tessellation import Tessellation


@functools.lru_cache(maxsize=64)
def _basis_np(tess: Tessellation) -> np.ndarray:
    lmat = tess.constraint_matrix()
    n = 6 * tess.num_cells
    if lmat.shape[0] == 0:
        return np.eye(n)
    _, s, vh = np.linalg.svd(lmat, full_matrices=True)
    rank = int((s > 1e-9 * max(1.0, s[0])).sum())
    return np.ascontiguousarray(vh[rank:].T)


def basis(tess: Tessellation, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Orthonormal null space B of the tessellation's constraints.

    Returns:
        (6 * num_cells, d) tensor; flat cell parameters are ``B @ theta``. Computed once per
        (tessellation, constraints) and kept in memory; nothing is written to disk.
    """
    # A copy: the cached array must not change when a caller edits the tensor in place.
    return torch.tensor(_basis_np(tess), dtype=dtype, device=device)
