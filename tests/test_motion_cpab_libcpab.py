"""Cross-checks of methods.motion.cpab against libcpab 0.1.3 (test-only dependency)."""

from __future__ import annotations

import warnings

import pytest
import torch

from methods.motion.cpab import CPAB, Tessellation

libcpab = pytest.importorskip("libcpab")


def _lib(nc: int, zb: bool, vp: bool = False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return libcpab.Cpab([nc, nc], device="cpu", zero_boundary=zb, volume_perservation=vp)


def _lib_to_ours_flat(flat_lib: torch.Tensor, ncell: int) -> torch.Tensor:
    """libcpab works on [0, 1]^2: with x = 2u - 1 the same motion has M = M_lib and
    b = 2 b_lib + M 1 in our coordinates."""
    a = flat_lib.reshape(*flat_lib.shape[:-1], ncell, 2, 3)
    m, b = a[..., :2], a[..., 2]
    return torch.cat([m, (2 * b + m.sum(-1))[..., None]], -1).reshape(flat_lib.shape)


def _ours_to_lib_theta(cpab: CPAB, lib, theta: torch.Tensor) -> torch.Tensor:
    a = cpab.cell_matrices(theta)
    m, b = a[..., :2], a[..., 2]
    flat = torch.cat([m, (0.5 * (b - m.sum(-1)))[..., None]], -1).reshape(theta.shape[0], -1)
    return flat @ torch.as_tensor(lib.params.basis, dtype=torch.float64)


@pytest.mark.parametrize("nc,zb,vp", [(4, False, False), (4, True, False), (3, False, True)])
def test_same_velocity_space_as_libcpab(nc, zb, vp):
    lib = _lib(nc, zb, vp)
    ours = CPAB(Tessellation(nc, nc, zero_boundary=zb, volume_preserving=vp))
    lib_b = torch.as_tensor(lib.params.basis, dtype=torch.float64)  # (D, d)
    mapped = _lib_to_ours_flat(lib_b.T, ours.tess.num_cells).T
    proj = ours.basis @ (ours.basis.T @ mapped)
    assert lib_b.shape[1] == ours.dim
    assert (proj - mapped).abs().max() < 1e-9


def test_cell_index_matches_libcpab():
    from libcpab.findcellidx import findcellidx

    tess = Tessellation(4, 4)
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(3000, 2, generator=g) * 3 - 1.5  # includes every outside region
    ours = tess.cell_index(pts)
    theirs = findcellidx(2, ((pts + 1) / 2).T.contiguous(), [4, 4])
    assert (ours == theirs).float().mean() > 0.999  # ties on cell borders may differ


def test_transform_matches_libcpab_for_the_same_field():
    lib = _lib(4, False)
    ours = CPAB(Tessellation(4, 4))
    theta = 0.3 * ours.sample(3, generator=torch.Generator().manual_seed(0))
    theta_lib = _ours_to_lib_theta(ours, lib, theta).float()
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(3, 400, 2, generator=g) * 2 - 1
    with torch.no_grad():
        theirs = lib.transform_grid(((pts + 1) / 2).permute(0, 2, 1).contiguous(), theta_lib)
    theirs = theirs.permute(0, 2, 1).double() * 2 - 1
    exact = ours.transform(pts.double(), theta)
    numeric = ours.transform(pts, theta.float(), method="numeric")
    assert (exact - pts).abs().max() > 0.05  # a real motion
    # Within 1e-3 of the domain size (the domain is 2 wide), and the same scheme agrees tightly.
    assert (exact - theirs).abs().max() < 2e-3
    assert (numeric.double() - theirs).abs().max() < 1e-4


@pytest.mark.parametrize("nc,zb,vp", [(4, False, False), (6, False, False), (4, True, False), (3, False, True)])
def test_libcpab_theta_coordinates_are_libcpabs(nc, zb, vp):
    """methods.motion.cpab.libcpab_theta rebuilds libcpab's constraint matrix and basis exactly
    (libcpab 0.1.3 builds the same ones as the release's pinned libcpab @aabfd9e), and maps its
    theta to ours for the same transformation."""
    import numpy as np

    from methods.motion.cpab.libcpab_theta import constraint_matrix, libcpab_basis, libcpab_to_ours

    lib = _lib(nc, zb, vp)
    tess = Tessellation(nc, nc, zero_boundary=zb, volume_preserving=vp)
    assert np.array_equal(constraint_matrix(tess), np.asarray(lib.params.constrain_mat))
    assert torch.equal(libcpab_basis(tess), torch.as_tensor(lib.params.basis, dtype=torch.float64))
    ours = CPAB(tess)
    to_ours = libcpab_to_ours(tess, ours.basis)
    theta_lib = torch.randn(2, ours.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theta = theta_lib @ to_ours.T
    assert torch.allclose(_ours_to_lib_theta(ours, lib, theta), theta_lib, atol=1e-10)
    if not zb:  # the local 4x4 and global 6x6 of the release: Adam's steps are rescaled unevenly
        singular = torch.linalg.svdvals(to_ours)
        assert 0.75 < float(singular.min()) < 0.85 and 2.4 < float(singular.max()) < 2.6
