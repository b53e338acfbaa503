"""Fitting theta so that T_theta(kp_driving) matches kp_source."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .integrate import plan_segments, replay_segments
from .prior import Prior, prior_covariance, prior_precision

if TYPE_CHECKING:
    from .core import CPAB


def fit_adam(
    cpab: CPAB,
    kp_driving: torch.Tensor,
    kp_source: torch.Tensor,
    iterations: int = 200,
    lr: float = 1e-2,
    method: str = "numeric",
    steps: int = 50,
) -> torch.Tensor:
    """The release's procedure: theta from zero, Adam on ||T(kp_d) - kp_s|| (Frobenius over
    the whole batch), keypoints detached. Shapes (S, N, 2) -> (S, d); no gradient to keypoints.
    """
    kd = kp_driving.detach().float()
    ks = kp_source.detach().float()
    theta = torch.zeros(kd.shape[0], cpab.dim, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    for _ in range(iterations):
        opt.zero_grad()
        loss = torch.linalg.norm(cpab.transform(kd, theta, method=method, steps=steps) - ks)
        loss.backward()
        opt.step()
    return theta.detach()


def _solve(j: torch.Tensor, cov: torch.Tensor, rhs: torch.Tensor, reg: float) -> torch.Tensor:
    """Sigma J^T (J Sigma J^T + reg I)^-1 rhs, batched; J (S, M, d), rhs (S, M) -> (S, d).

    This kernel form of the regularised normal equations only inverts an M x M matrix
    (M = 2 * keypoints, fewer than d here) and never needs Sigma^-1.
    """
    js = j @ cov
    gram = js @ j.transpose(1, 2)
    gram = gram + reg * torch.eye(gram.shape[-1], dtype=gram.dtype)
    w = torch.linalg.solve(gram, rhs.unsqueeze(-1))
    return (js.transpose(1, 2) @ w).squeeze(-1)


def _jacobian(cpab: CPAB, kd: torch.Tensor, a: torch.Tensor, segments, base, h: float = 1e-7):
    """(S, 2N, d) Jacobian of T_theta(kd) at cell matrices ``a`` by forward differences.

    The perturbed fields replay the base trajectory's planned segments (cells and hit
    times). That changes T only at second order (hit-time effects cancel for continuous
    fields), so one hit-time search serves all d columns.
    """
    s, n, _ = kd.shape
    d = cpab.dim
    da = (h * cpab.basis.T).reshape(1, d, cpab.tess.num_cells, 2, 3)
    ap = (a[:, None] + da).permute(0, 2, 1, 3, 4)  # (S, C, d, 2, 3)
    pts = kd[:, :, None].expand(s, n, d, 2)
    out = replay_segments(pts, ap, segments)  # (S, N, d, 2)
    jac = (out - base[:, :, None]) / h
    return jac.permute(0, 1, 3, 2).reshape(s, 2 * n, d)


def _evaluate(cpab: CPAB, kd: torch.Tensor, theta: torch.Tensor):
    """Exact T_theta(kd), its Jacobian, and the plan (one hit-time search)."""
    a = cpab.cell_matrices(theta)
    segments, out = plan_segments(kd, a, cpab.tess)
    return out, _jacobian(cpab, kd, a, segments, out), segments


def _regularised_objective(
    out: torch.Tensor, ks: torch.Tensor, theta: torch.Tensor, prec: torch.Tensor, reg: float
) -> torch.Tensor:
    """Per set: |out - ks|^2 + reg * theta^T Sigma^-1 theta (``out`` = T_theta(kp_d))."""
    r = (out - ks).reshape(theta.shape[0], -1)
    return (r * r).sum(-1) + reg * ((theta @ prec) * theta).sum(-1)


def fit_objective(
    cpab: CPAB,
    theta: torch.Tensor,
    kp_driving: torch.Tensor,
    kp_source: torch.Tensor,
    prior: Prior | None = None,
    reg: float = 1e-5,
) -> torch.Tensor:
    """The (S,) objective :func:`fit_fast` minimises, evaluated with the exact transform."""
    prec = prior_precision(cpab.tess, prior or cpab.prior)
    kd = kp_driving.detach().to(torch.float64)
    out = cpab.transform(kd, theta.detach().to(torch.float64), method="closed_form")
    return _regularised_objective(out, kp_source.detach().to(torch.float64), theta.detach(), prec, reg)


def fit_fast(
    cpab: CPAB,
    kp_driving: torch.Tensor,
    kp_source: torch.Tensor,
    prior: Prior | None = None,
    reg: float = 1e-5,
    gn_steps: int = 2,
    differentiable: bool = True,
) -> torch.Tensor:
    """Regularised least squares in the linearised space, then damped Gauss-Newton.

    Minimises ``|T_theta(kp_d) - kp_s|^2 + reg * theta^T Sigma^-1 theta`` (Sigma: prior
    covariance). Start: one linear solve with the exact Jacobian at theta = 0 (T = x + v).
    Each Gauss-Newton step uses finite-difference Jacobians of the exact integrator; a set
    only moves when its objective decreases (else its next step is halved), so the result
    is never worse than the linear start.

    If ``differentiable`` and the keypoints require grad, the returned theta carries the
    implicit-function-theorem derivative d theta*/d(kp) = Sigma J^T (J Sigma J^T + reg I)^-1
    (exact at a zero-residual optimum); its value is unchanged.

    Args:
        kp_driving, kp_source: (S, N, 2) in [-1, 1]^2.

    Returns:
        (S, d) float64 theta.
    """
    prior = prior or cpab.prior
    cov = prior_covariance(cpab.tess, prior)
    prec = prior_precision(cpab.tess, prior)
    kd = kp_driving.detach().to(torch.float64)
    ks = kp_source.detach().to(torch.float64)
    s, n, _ = kd.shape

    j0 = cpab.velocity_jacobian(kd)
    theta = _solve(j0, cov, (ks - kd).reshape(s, -1), reg)
    out, jac, _ = _evaluate(cpab, kd, theta)
    cur = _regularised_objective(out, ks, theta, prec, reg)
    alpha = torch.ones(s, dtype=torch.float64)
    for _ in range(gn_steps):
        # One plan per step: it scores the candidate and, replayed, gives its Jacobian.
        # Sets whose objective does not drop keep theta and halve their step (damping).
        r = (out - ks).reshape(s, -1)
        target = _solve(jac, cov, (jac @ theta.unsqueeze(-1)).squeeze(-1) - r, reg)
        cand = theta + alpha[:, None] * (target - theta)
        c_out, c_jac, _ = _evaluate(cpab, kd, cand)
        c_obj = _regularised_objective(c_out, ks, cand, prec, reg)
        ok = c_obj < cur
        theta = torch.where(ok[:, None], cand, theta)
        out = torch.where(ok[:, None, None], c_out, out)
        jac = torch.where(ok[:, None, None], c_jac, jac)
        cur = torch.where(ok, c_obj, cur)
        alpha = torch.where(ok, torch.ones_like(alpha), 0.5 * alpha)
    needs = kp_driving.requires_grad or kp_source.requires_grad
    if not (differentiable and needs and torch.is_grad_enabled()):
        return theta
    kd_g = kp_driving.to(torch.float64)
    end = cpab.transform(kd_g, theta, method="closed_form")
    u = _solve(jac, cov, (kp_source.to(torch.float64) - end).reshape(s, -1), reg)
    return theta + (u - u.detach())
