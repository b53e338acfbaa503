"""Each module of methods.motion.cpab imported on its own, one promise each beyond what
tests/test_motion_cpab*.py (which go through the package) already check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.motion.cpab.basis import basis
from methods.motion.cpab.core import CPAB, check_finite
from methods.motion.cpab.fit import fit_fast, fit_objective
from methods.motion.cpab.prior import Prior, prior_covariance, prior_precision, sample_theta
from methods.motion.cpab.tessellation import Tessellation


def _points(b: int, n: int, seed: int = 0, lim: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, n, 2, generator=g, dtype=torch.float64) * 2 - 1) * lim


# ---------------------------------------------------------------------------- tessellation


@pytest.mark.parametrize("tess", [Tessellation(3, 2), Tessellation(2, 3, kind="squares")], ids=str)
def test_tessellation_numbers_cells_as_documented(tess):
    centres = torch.as_tensor(tess.cell_centers())
    assert centres.shape == (tess.num_cells, 2)
    assert torch.equal(tess.cell_index(centres), torch.arange(tess.num_cells))
    if tess.kind == "squares":  # cell = iy * nx + ix
        assert int(tess.cell_index(torch.tensor([0.5, -0.1]))) == 1 * tess.nx + 1
    else:  # 4 * (iy * nx + ix) + t with t = 0 top (smaller y), 1 right, 2 bottom, 3 left
        sq = 1 * tess.nx + 1  # the square around (0, 0.5)
        cx, cy = 0.0, 0.5
        probes = torch.tensor([[cx, cy - 0.2], [cx + 0.2, cy], [cx, cy + 0.2], [cx - 0.2, cy]])
        assert tess.cell_index(probes).tolist() == [4 * sq + t for t in range(4)]
    # Outside the domain: the nearest boundary cell's extension.
    far = torch.tensor([[-5.0, -0.9], [5.0, 0.9]])
    inside = torch.tensor([[-0.999, -0.9], [0.999, 0.9]])
    assert torch.equal(tess.cell_index(far), tess.cell_index(inside))


def test_tessellation_validates_and_applies_libcpabs_outside_rule():
    with pytest.raises(ValueError, match="kind must be one of"):
        Tessellation(2, 2, kind="hexagons")
    with pytest.raises(ValueError, match="positive"):
        Tessellation(0, 2)
    assert Tessellation(2, 2).outside and not Tessellation(2, 2, zero_boundary=True).outside
    assert Tessellation(2, 2, zero_boundary=True, extend_outside=True).outside
    assert (Tessellation(2, 3).num_cells, Tessellation(2, 3, kind="squares").num_cells) == (24, 6)
    # One square has nothing to agree with: every affine field is admissible (d = 6).
    one = Tessellation(1, 1, kind="squares")
    assert one.constraint_matrix().shape == (0, 6) and basis(one).shape == (6, 6)
    # Volume preservation adds one trace row per cell.
    plain = Tessellation(2, 2, kind="squares").constraint_matrix()
    vp = Tessellation(2, 2, kind="squares", volume_preserving=True).constraint_matrix()
    assert vp.shape[0] == plain.shape[0] + 4


# ------------------------------------------------------------------------------------ core


def test_check_finite_names_every_bad_row_and_passes_finite_values():
    check_finite("x", torch.zeros(3, 4, 2))
    value = torch.zeros(4, 5, 2)
    value[1, 2, 0] = float("nan")
    value[3, 0, 1] = -float("inf")
    with pytest.raises(ValueError, match=r"CPAB: x has non-finite values \(NaN or inf\) in batch rows \[1, 3\]"):
        check_finite("x", value)
    # Gradients through the value do not matter (it is inspected detached).
    check_finite("y", torch.ones(2, 3, requires_grad=True))


def test_transform_is_the_time_one_flow_of_a_stationary_field():
    """T_theta is the time-1 flow of v_theta, so flowing twice is flowing for time 2:
    T_theta(T_theta(x)) = T_{2 theta}(x)."""
    cpab = CPAB(Tessellation(3, 3))
    theta = 0.5 * cpab.sample(2, generator=torch.Generator().manual_seed(0))
    x = _points(2, 100)
    twice = cpab.transform(cpab.transform(x, theta), theta)
    assert (twice - x).abs().max() > 1e-2
    assert (twice - cpab.transform(x, 2 * theta)).abs().max() < 1e-9
    # ... and for small theta, x + v_theta(x) to first order (the rest is second order).
    small = 1e-4 * theta
    step = cpab.transform(x, small) - x
    assert (step - cpab.velocity(x, small)).abs().max() < 1e-3 * step.abs().max()


def test_core_refuses_unknown_methods_and_mismatched_shapes():
    cpab = CPAB(Tessellation(2, 2))
    x, theta = _points(1, 3), cpab.identity(1, torch.float64)
    assert theta.shape == (1, cpab.dim) and theta.dtype == torch.float64 and not theta.any()
    with pytest.raises(ValueError, match="unknown method 'euler'"):
        cpab.transform(x, theta, method="euler")
    with pytest.raises(ValueError, match="unknown fit method 'lbfgs'"):
        cpab.fit(x, x, method="lbfgs")
    with pytest.raises(ValueError, match="keypoints .S, N, 2. of equal shape"):
        cpab.fit(x, _points(1, 4))


# ------------------------------------------------------------------------------------- fit


def test_fit_objective_is_residual_plus_prior_penalty():
    cpab = CPAB(Tessellation(2, 2))
    kd, ks = _points(2, 6, seed=1, lim=0.7), _points(2, 6, seed=2, lim=0.7)
    zero = torch.zeros(2, cpab.dim, dtype=torch.float64)
    assert torch.allclose(fit_objective(cpab, zero, kd, ks), ((kd - ks) ** 2).sum((1, 2)))
    theta = 0.3 * cpab.sample(2, generator=torch.Generator().manual_seed(3))
    prec = prior_precision(cpab.tess, cpab.prior)
    expected = ((cpab.transform(kd, theta) - ks) ** 2).sum((1, 2)) + 0.5 * (
        (theta @ prec) * theta
    ).sum(-1)
    assert torch.allclose(fit_objective(cpab, theta, kd, ks, reg=0.5), expected, rtol=1e-12)
    # fit_fast is never worse than theta = 0 under that objective, and returns (S, d) float64.
    fitted = fit_fast(cpab, kd, ks, differentiable=False)
    assert fitted.shape == (2, cpab.dim) and fitted.dtype == torch.float64
    assert not fitted.requires_grad
    assert (fit_objective(cpab, fitted, kd, ks) <= fit_objective(cpab, zero, kd, ks)).all()


# ---------------------------------------------------------------------------------- prior


def test_prior_covariance_is_the_projected_squared_exponential_kernel():
    tess, prior = Tessellation(2, 2), Prior(length_scale=0.5, variance=2.0)
    assert Prior() == Prior(length_scale=0.2, variance=1.0)
    c = tess.cell_centers()
    d2 = ((c[:, None] - c[None]) ** 2).sum(-1)
    cov_a = np.kron(2.0 * np.exp(-d2 / (2 * 0.5**2)), np.eye(6))
    b = basis(tess).numpy()
    expected = b.T @ cov_a @ b
    cov = prior_covariance(tess, prior)
    assert cov.dtype == torch.float64 and cov.shape == (b.shape[1],) * 2
    np.testing.assert_allclose(cov.numpy(), expected, atol=1e-12)
    # The precision is its pseudo-inverse.
    prec = prior_precision(tess, prior)
    assert torch.allclose(cov @ prec @ cov, cov, atol=1e-8)


def test_prior_samples_have_the_prior_covariance():
    tess, prior = Tessellation(1, 1), Prior(length_scale=0.3, variance=1.5)
    draws = sample_theta(tess, 20000, prior, torch.Generator().manual_seed(0))
    cov = prior_covariance(tess, prior)
    assert draws.shape == (20000, cov.shape[0]) and draws.dtype == torch.float64
    empirical = draws.T @ draws / draws.shape[0]
    # 20000 draws: entries within a few standard errors (~ sqrt(2 / n) of the scale).
    assert (empirical - cov).abs().max() < 0.05 * cov.diagonal().max()
    again = sample_theta(tess, 3, prior, torch.Generator().manual_seed(7))
    assert torch.equal(again, sample_theta(tess, 3, prior, torch.Generator().manual_seed(7)))


# ------------------------------------------------------------------------- plan_compiled


def test_compiled_plan_spends_each_trajectorys_unit_time_in_ordered_rounds():
    from methods.motion.cpab import integrate
    from methods.motion.cpab.plan_compiled import plan_compiled

    tess = Tessellation(3, 3)
    cpab = CPAB(tess)
    theta = 2.0 * cpab.sample(2, generator=torch.Generator().manual_seed(1))
    a = cpab.cell_matrices(theta)
    x = _points(2, 40, seed=4, lim=1.05)
    edges, nbr = integrate._regions(tess)
    limit = integrate._rotation_limit(a.reshape(-1, 2, 3)[:, :, :2].contiguous())
    last = 4 * (tess.nx + tess.ny) + 8
    segments, end = plan_compiled(x, a, tess.kind, tess.nx, tess.ny, edges, nbr, limit, last,
                                  integrate._INSIDE_TOL, integrate._HIT_TOL, integrate._HIT_ITERS)
    assert end.shape == x.shape and end.dtype == torch.float64
    assert torch.allclose(end, cpab.transform(x, theta), atol=1e-9)
    assert len(segments) > 1  # some trajectories cross cells
    total = torch.zeros(x.shape[0] * x.shape[1], dtype=torch.float64)
    for k, (points, cells, durations) in enumerate(segments):
        assert points.dtype == cells.dtype == torch.long and durations.dtype == torch.float64
        assert (points[1:] > points[:-1]).all()  # within a round: points ascending, once each
        assert ((durations >= 0) & (durations <= 1)).all()
        if k == 0:
            assert torch.equal(points, torch.arange(x.shape[0] * x.shape[1]))
        # Global cell id = b * C + c, with b the point's batch row.
        assert torch.equal(cells // tess.num_cells, points // x.shape[1])
        total.index_add_(0, points, durations)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-12)
