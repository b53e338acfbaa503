"""Fitting theta so that T_theta(kp_driving) matches kp_source."""

from __future__ import annotations

import math
from typing import Protocol

import torch

from .integrate import plan_segments, replay_segments
from .prior import Prior, prior_covariance, prior_precision
from .tessellation import Tessellation


class CPAB(Protocol):
    """What the fits use of a transformation (:class:`methods.motion.cpab.core.CPAB`, whose
    ``fit`` calls them: typed by this protocol, the module needs no import back to core)."""

    tess: Tessellation
    prior: Prior

    @property
    def dim(self) -> int: ...

    @property
    def basis(self) -> torch.Tensor: ...

    def cell_matrices(self, theta: torch.Tensor) -> torch.Tensor: ...

    def velocity_jacobian(self, points: torch.Tensor) -> torch.Tensor: ...

    def transform(
        self, points: torch.Tensor, theta: torch.Tensor, method: str = ..., steps: int = ...
    ) -> torch.Tensor: ...


def fit_adam(
    cpab: CPAB,
    kp_driving: torch.Tensor,
    kp_source: torch.Tensor,
    iterations: int = 200,
    lr: float = 1e-2,
    method: str = "numeric",
    steps: int = 50,
    coordinates: torch.Tensor | None = None,
    init: float = 0.0,
) -> torch.Tensor:
    """The release's procedure: Adam on ||T(kp_d) - kp_s|| (Frobenius over the whole batch),
    keypoints detached, every coordinate of theta starting at ``init`` (the release: 1e-6).
    Shapes (S, N, 2) -> (S, d); no gradient to keypoints.

    ``coordinates``: a (d, d) matrix P; Adam then runs over phi with theta = P phi (the
    release's libcpab coordinates: :func:`methods.motion.cpab.libcpab_theta.libcpab_to_ours`).
    Adam's steps depend on the coordinates it runs in, so this is what reproduces the release.
    """
    kd = kp_driving.detach().float()
    ks = kp_source.detach().float()
    phi = torch.full((kd.shape[0], cpab.dim), float(init), requires_grad=True)
    to_theta = None if coordinates is None else coordinates.to(torch.float32).T
    opt = torch.optim.Adam([phi], lr=lr)
    for _ in range(iterations):
        opt.zero_grad()
        theta = phi if to_theta is None else phi @ to_theta
        loss = torch.linalg.norm(cpab.transform(kd, theta, method=method, steps=steps) - ks)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (phi if to_theta is None else phi @ to_theta).detach()


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
    return _regularised_objective(
        out, kp_source.detach().to(torch.float64), theta.detach(), prec, reg
    )


def _select_rows(segments, rows: torch.Tensor, batch: int, n: int, ncell: int):
    """The planned segments of batch rows ``rows`` only, renumbered as a batch of their own.

    A plan of several candidate batches at once costs little more than one (the search is
    bound by per-op overhead, not by points); the Jacobian is then replayed for the chosen
    candidates alone.
    """
    new = torch.full((batch,), -1, dtype=torch.long)
    new[rows] = torch.arange(rows.numel())
    out = []
    for idx, g, dur in segments:
        b = new[idx // n]
        keep = b >= 0
        out.append((b[keep] * n + idx[keep] % n, b[keep] * ncell + g[keep] % ncell, dur[keep]))
    return out


def _damped_targets(
    jac: torch.Tensor,
    cov: torch.Tensor,
    theta: torch.Tensor,
    r: torch.Tensor,
    reg: float,
    mu: torch.Tensor,
) -> torch.Tensor:
    """Levenberg-Marquardt steps for K damping values at once.

    Per set and damping mu (both in the prior metric), the minimiser t of
    ``|r + J (t - theta)|^2 + reg |t|^2_P + mu |t - theta|^2_P`` (P = Sigma^-1): in kernel
    form ``m + Sigma J^T (J Sigma J^T + (reg + mu) I)^-1 (y - J m)`` with
    ``y = J theta - r`` and ``m = mu theta / (reg + mu)``. mu = 0 is the Gauss-Newton
    step; large mu shrinks the step towards a Sigma-preconditioned gradient step.

    Shapes: jac (S, M, d), theta (S, d), r (S, M), mu (S, K) -> (S, K, d).
    """
    s, m_rows, d = jac.shape
    lam = reg + mu  # (S, K)
    mean = (mu / lam)[..., None] * theta[:, None]  # (S, K, d)
    js = jac @ cov  # (S, M, d)
    gram = js @ jac.transpose(1, 2)  # (S, M, M)
    eye = torch.eye(m_rows, dtype=jac.dtype, device=jac.device)
    gram = gram[:, None] + lam[..., None, None] * eye  # (S, K, M, M)
    y = (jac @ theta.unsqueeze(-1)).squeeze(-1) - r  # (S, M)
    rhs = y[:, None] - torch.einsum("smd,skd->skm", jac, mean)
    w = torch.linalg.solve(gram, rhs.unsqueeze(-1)).squeeze(-1)  # (S, K, M)
    return mean + torch.einsum("smd,skm->skd", js, w)


def _turn_rate(a: torch.Tensor) -> torch.Tensor:
    """(B, C, 2, 3) -> (B,): the fastest cell rotation rate omega (imaginary part of the
    eigenvalues of M) of every field; 0 for cells with real eigenvalues."""
    m = a[..., :2]
    tr = m[..., 0, 0] + m[..., 1, 1]
    det = m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]
    return (det - tr * tr / 4).clamp_min(0).sqrt().amax(-1)


def fit_fast(
    cpab: CPAB,
    kp_driving: torch.Tensor,
    kp_source: torch.Tensor,
    prior: Prior | None = None,
    reg: float = 1e-5,
    gn_steps: int = 3,
    differentiable: bool = True,
    damping: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
    rtol: float = 1e-3,
    max_turn: float = 2 * math.pi,
) -> torch.Tensor:
    """Regularised least squares by Levenberg-Marquardt with a ladder of dampings per step.

    Minimises ``|T_theta(kp_d) - kp_s|^2 + reg * theta^T Sigma^-1 theta`` (Sigma: prior
    covariance) from theta = 0, where the exact Jacobian of T is that of the velocity
    (``T = x + v_theta(x)`` to first order). Every step proposes one candidate per entry
    of ``damping`` (0: the Gauss-Newton step; the others in units of the mean diagonal of
    ``J Sigma J^T``, scaled by the set's current damping level) and scores them all in a
    single exact hit-time search; a set takes its best candidate if that lowers its
    objective, else its damping level rises 1000-fold. The level follows the chosen
    candidate, so sets far from the solution take short, gradient-like steps and sets near
    it take Gauss-Newton steps. A set stops after ``gn_steps`` steps, or once a step gains
    less than ``rtol`` of its objective. The objective never increases, so the result is
    never worse than theta = 0 nor than any earlier step. The first step's mu = 0 candidate
    is the former linear start (one linear solve at theta = 0).

    Jacobians of accepted candidates are forward differences on the exact integrator that
    replay the candidate's planned segments (cells and hit times): that changes T only at
    second order (hit-time effects cancel for continuous fields), so one hit-time search
    serves all d columns.

    If ``differentiable`` and the keypoints require grad, the returned theta carries the
    implicit-function-theorem derivative d theta*/d(kp) = Sigma J^T (J Sigma J^T + reg I)^-1
    (exact at a zero-residual optimum); its value is unchanged.

    Args:
        kp_driving, kp_source: (S, N, 2) in [-1, 1]^2.
        gn_steps: most damped Gauss-Newton steps per set after the first.
        damping: the ladder of relative dampings tried at every step (0 allowed).
        rtol: a set stops once a step lowers its objective by less than this fraction.

    Returns:
        (S, d) float64 theta.
    """
    prior = prior or cpab.prior
    cov = prior_covariance(cpab.tess, prior)
    prec = prior_precision(cpab.tess, prior)
    kd = kp_driving.detach().to(torch.float64)
    ks = kp_source.detach().to(torch.float64)
    s, n, _ = kd.shape
    ladder = torch.as_tensor(damping, dtype=torch.float64)
    k = ladder.numel()
    ncell = cpab.tess.num_cells

    # The search runs under inference_mode (per-op overhead bounds it; same values); theta
    # and the Jacobian are cloned out for the differentiable tail below.
    with torch.inference_mode():
        # theta = 0: T = identity, exact Jacobian of the velocity.
        theta = torch.zeros(s, cpab.dim, dtype=torch.float64)
        out = kd.clone()
        jac = cpab.velocity_jacobian(kd)
        cur = _regularised_objective(out, ks, theta, prec, reg)
        # Damping unit per set: the mean diagonal of J Sigma J^T at theta = 0, where damping
        # starts to matter; the level multiplies the ladder and adapts.
        unit = torch.einsum("smd,de,sme->s", jac, cov, jac) / jac.shape[1]
        level = torch.ones(s, dtype=torch.float64)
        rungs = ladder[ladder > 0]
        rung_low = rungs.min() if rungs.numel() else torch.tensor(1.0, dtype=torch.float64)
        span = float(rungs.max() / rung_low) * 10 if rungs.numel() else 10.0
        rung_mid = (rungs.max() * rung_low).sqrt() if rungs.numel() else rung_low
        active = torch.arange(s)
        for _ in range(gn_steps + 1):
            if active.numel() == 0:
                break
            th, jc, lv = theta[active], jac[active], level[active]
            na = active.numel()
            r = (out[active] - ks[active]).reshape(na, -1)
            mu = (unit[active] * lv)[:, None] * ladder  # (A, K)
            cand = _damped_targets(jc, cov, th, r, reg, mu)  # (A, K, d)
            # One hit-time search for all candidates; row a * K + j is set a's candidate j.
            flat = cand.reshape(na * k, -1)
            kd_rep = kd[active].repeat_interleave(k, 0)
            a = cpab.cell_matrices(flat)
            c_obj = torch.full((na * k,), float("inf"), dtype=torch.float64)
            c_out = kd_rep.clone()
            # Trust region: candidates with a cell turning faster than max_turn per unit time
            # are not scored (their trajectories loop inside cells, and the exact search would
            # spend ~2 omega / pi sub-steps on them; such candidates never won in the benchmark).
            ok_rows = (_turn_rate(a) <= max_turn).nonzero().squeeze(1)
            segments = []
            if ok_rows.numel():
                segments, o = plan_segments(kd_rep[ok_rows], a[ok_rows], cpab.tess)
                c_out[ok_rows] = o
                c_obj[ok_rows] = _regularised_objective(
                    o, ks[active].repeat_interleave(k, 0)[ok_rows], flat[ok_rows], prec, reg
                )
            c_obj = c_obj.reshape(na, k)
            best_obj, best = c_obj.min(-1)
            ok = best_obj < cur[active]
            gain = (cur[active] - best_obj) / cur[active]
            rows = (torch.arange(na) * k + best)[ok]
            acc = active[ok]
            if acc.numel():
                pos = torch.full((na * k,), -1, dtype=torch.long)
                pos[ok_rows] = torch.arange(ok_rows.numel())
                sel = _select_rows(segments, pos[rows], ok_rows.numel(), n, ncell)
                c_jac = _jacobian(cpab, kd[acc], a[rows], sel, c_out[rows])
                theta[acc] = flat[rows]
                out[acc] = c_out[rows]
                jac[acc] = c_jac
                cur[acc] = best_obj[ok]
            # Accepted: the ladder's middle moves a decade below the chosen damping (the usual
            # LM decrease after success; Gauss-Newton counts as a decade below the lowest
            # rung). Rejected: the ladder moves up by its span, past every rung just tried.
            chosen = torch.where(ladder[best] > 0, ladder[best], rung_low / 10)
            level[active] = torch.where(ok, lv * chosen / (10 * rung_mid), lv * span).clamp(
                1e-12, 1e12
            )
            done = (ok & (gain < rtol)) | ~torch.isfinite(best_obj)
            active = active[~done]
    theta, jac = theta.clone(), jac.clone()
    needs = kp_driving.requires_grad or kp_source.requires_grad
    if not (differentiable and needs and torch.is_grad_enabled()):
        return theta
    kd_g = kp_driving.to(torch.float64)
    end = cpab.transform(kd_g, theta, method="closed_form")
    u = _solve(jac, cov, (kp_source.to(torch.float64) - end).reshape(s, -1), reg)
    return theta + (u - u.detach())
