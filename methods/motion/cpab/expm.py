"""Exponential and phi_1 of batched 2x2 matrices, written in Cayley-Hamilton form.

For a 2x2 matrix Z with trace T and determinant D, every analytic function of Z is
``alpha * I + beta * Z``. We compute the scalar pairs for ``exp(Z)`` and
``phi_1(Z) = (exp(Z) - I) / Z`` (defined by its series, so singular Z is fine) from
(T, D) alone, elementwise over any batch shape. This is ~20x cheaper than
``torch.linalg.matrix_exp`` on (N, 3, 3) tensors and needs no matrix inverse.

The affine flow dx/dt = M x + b then has the exact solution
``x(t) = x0 + t * phi_1(t M) (M x0 + b)`` and ``exp(t M) = I + t * phi_1(t M) M``.
"""

from __future__ import annotations

import functools
import math

import torch

_DEGREE = 12  # Taylor degree after scaling to spectral radius <= 0.5: error < 2e-15
_MAX_DEGREE = 20
_INV_FACT = [1.0 / math.factorial(j + 1) for j in range(_MAX_DEGREE + 1)]
# Truncation bound of the reference setting (degree 12 at radius 0.5); every (scaling,
# degree) pair chosen below has a first omitted term no larger than this.
_TRUNC = 0.5 ** (_DEGREE + 1) * _INV_FACT[_DEGREE + 1]


def _schedule(rmax: float) -> tuple[int, int]:
    """(squarings k, Taylor degree) with the fewest elementwise ops for spectral radius rmax.

    A Horner step costs 2 fused ops and a squaring ~14, so small radii use a short series
    and large ones trade degree against squarings (the unscaled radius is kept <= 1). The
    first omitted term (rmax / 2^k)^(K+1) / (K+2)! never exceeds that of degree 12 at
    radius 0.5, the previous fixed setting.
    """
    best = None
    k_min = max(0, math.ceil(math.log2(rmax))) if rmax > 1.0 else 0
    for k in range(k_min, k_min + 3):
        r = rmax / 2.0**k
        deg = next(
            (j for j in range(1, _MAX_DEGREE) if r ** (j + 1) * _INV_FACT[j + 1] <= _TRUNC), None
        )
        if deg is None:
            continue
        cost = 2 * deg + 14 * k
        if best is None or cost < best[0]:
            best = (cost, k, deg)
        if r <= 0.5:
            break
    assert best is not None
    return best[1], best[2]


def _radius_bound(tr: torch.Tensor, det: torch.Tensor) -> float:
    """Largest spectral-radius bound over the *finite* entries.

    Non-finite entries (NaN or inf in one row) only spoil their own results: they must not
    shorten or lengthen the series every other entry is computed with.
    """
    # From the characteristic polynomial; the series in Cayley-Hamilton form converges at
    # the rate of the eigenvalues, not the norm.
    if tr.numel() == 0:
        return 0.0
    tr, det = tr.detach(), det.detach()
    rho = (tr * tr * 0.25 - det).abs_().sqrt_().add_(tr.abs().mul_(0.5))
    # Masking non-finite entries to 0 (not boolean indexing): no nonzero() per call.
    rho = rho.nan_to_num_(0.0, 0.0, 0.0)  # rho >= 0 or non-finite
    return min(float(rho.amax()), 1e300)


@functools.lru_cache(maxsize=16)
def _inv_fact(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """0-dim tensors of 1/(j+1)!, made once: building them per Horner step cost as much as
    the step itself on small batches."""
    return tuple(torch.tensor(c, dtype=dtype, device=device) for c in _INV_FACT)


def _coeffs_impl(
    tr: torch.Tensor, det: torch.Tensor, need_e: bool = True, need_f: bool = True
) -> tuple[torch.Tensor | None, ...]:
    """Return (e0, e1, f0, f1) with exp(Z) = e0 I + e1 Z and phi_1(Z) = f0 I + f1 Z.

    ``need_e`` / ``need_f`` = False skip work whose result the caller drops (it is returned
    as None): the exp pair's last squaring, or the phi_1 pair's squarings. The values kept
    are computed by the same operations, so they are bit-identical.
    """
    k, deg = _schedule(_radius_bound(tr, det))
    t = tr / (2.0**k) if k else tr
    d = det / (4.0**k) if k else det
    # Horner for phi_1(Y) = sum_j Y^j / (j+1)!, using Y^2 = T Y - D I.
    inv = _inv_fact(t.dtype, t.device)
    nd = -d
    if deg > 1:  # the first Horner step from (alpha, beta) = (c_deg, 0), written out
        alpha = torch.full_like(t, _INV_FACT[deg - 1])
        beta = torch.full_like(t, _INV_FACT[deg])
        first = deg - 2
    else:  # kept general: the outputs must depend on (t, d) for autograd and NaN rows
        alpha = torch.full_like(t, _INV_FACT[deg])
        beta = torch.zeros_like(t)
        first = deg - 1
    for j in range(first, -1, -1):
        alpha, beta = torch.addcmul(inv[j], beta, nd), torch.addcmul(alpha, beta, t)
    f0, f1 = alpha, beta
    if not need_e and k == 0:
        return None, None, f0, f1
    e0 = torch.addcmul(inv[0], beta, nd)
    e1 = torch.addcmul(alpha, beta, t)
    if not need_f:
        f0 = f1 = None
    for i in range(k):
        # phi_1(2Y) = (exp(Y) + I) phi_1(Y) / 2 and exp(2Y) = exp(Y)^2, re-expressed in 2Y.
        e1d = e1 * d
        if need_f:
            a1 = e0 + 1
            nf0 = 0.5 * (a1 * f0 - e1d * f1)
            nf1 = 0.25 * (a1 * f1 + e1 * f0 + e1 * f1 * t)
            f0, f1 = nf0, nf1
        if need_e or i < k - 1:
            ne0 = e0 * e0 - e1d * e1
            ne1 = e1 * (e0 + 0.5 * e1 * t)
            e0, e1 = ne0, ne1
        else:
            e0 = e1 = None
        t = 2 * t
        d = 4 * d
    return e0, e1, f0, f1


def _coeffs_vjp(tr: torch.Tensor, det: torch.Tensor, grads) -> tuple[torch.Tensor, torch.Tensor]:
    """Vector-Jacobian product of :func:`_coeffs_impl`: forward-mode derivatives in tr and
    det carried through the same Horner and squaring recursions (no autograd graph)."""
    k, deg = _schedule(_radius_bound(tr, det))
    st, sd = 0.5**k, 0.25**k  # d t / d tr and d d / d det at the current scale
    t = tr * st
    d = det * sd
    alpha = torch.full_like(t, _INV_FACT[deg])
    beta = torch.zeros_like(t)
    a_t = torch.zeros_like(t)  # d alpha / d tr
    b_t = torch.zeros_like(t)
    a_d = torch.zeros_like(t)  # d alpha / d det
    b_d = torch.zeros_like(t)
    for j in range(deg - 1, -1, -1):
        a_t, b_t, a_d, b_d = (
            -b_t * d,
            a_t + b_t * t + beta * st,
            -b_d * d - beta * sd,
            a_d + b_d * t,
        )
        alpha, beta = _INV_FACT[j] - beta * d, alpha + beta * t
    e0 = 1 - beta * d
    e0_t, e0_d = -b_t * d, -b_d * d - beta * sd
    e1 = alpha + beta * t
    e1_t, e1_d = a_t + b_t * t + beta * st, a_d + b_d * t
    f0, f0_t, f0_d = alpha, a_t, a_d
    f1, f1_t, f1_d = beta, b_t, b_d
    for _ in range(k):
        a1 = e0 + 1
        nf0 = 0.5 * (a1 * f0 - e1 * d * f1)
        nf0_t = 0.5 * (e0_t * f0 + a1 * f0_t - d * (e1_t * f1 + e1 * f1_t))
        nf0_d = 0.5 * (e0_d * f0 + a1 * f0_d - d * (e1_d * f1 + e1 * f1_d) - sd * e1 * f1)
        nf1 = 0.25 * (a1 * f1 + e1 * f0 + e1 * f1 * t)
        nf1_t = 0.25 * (
            e0_t * f1
            + a1 * f1_t
            + e1_t * f0
            + e1 * f0_t
            + t * (e1_t * f1 + e1 * f1_t)
            + st * e1 * f1
        )
        nf1_d = 0.25 * (e0_d * f1 + a1 * f1_d + e1_d * f0 + e1 * f0_d + t * (e1_d * f1 + e1 * f1_d))
        ne0 = e0 * e0 - e1 * e1 * d
        ne0_t = 2 * (e0 * e0_t - e1 * e1_t * d)
        ne0_d = 2 * (e0 * e0_d - e1 * e1_d * d) - sd * e1 * e1
        ne1 = e1 * e0 + 0.5 * e1 * e1 * t
        ne1_t = e1_t * e0 + e1 * e0_t + e1 * e1_t * t + 0.5 * st * e1 * e1
        ne1_d = e1_d * e0 + e1 * e0_d + e1 * e1_d * t
        e0, e1, f0, f1 = ne0, ne1, nf0, nf1
        e0_t, e1_t, f0_t, f1_t = ne0_t, ne1_t, nf0_t, nf1_t
        e0_d, e1_d, f0_d, f1_d = ne0_d, ne1_d, nf0_d, nf1_d
        t = 2 * t
        d = 4 * d
        st, sd = 2 * st, 4 * sd
    g0, g1, g2, g3 = grads
    g_tr = g0 * e0_t + g1 * e1_t + g2 * f0_t + g3 * f1_t
    g_det = g0 * e0_d + g1 * e1_d + g2 * f0_d + g3 * f1_d
    return g_tr, g_det


class _Coeffs(torch.autograd.Function):
    """Autograd wrapper with an analytic backward (forward-mode derivatives of the series).

    Storing the ~100-op graph for millions of points would cost gigabytes; the backward
    recomputes the series with its derivatives in chunks instead, keeping memory flat.
    """

    @staticmethod
    def forward(ctx, tr: torch.Tensor, det: torch.Tensor):  # type: ignore[override]
        ctx.save_for_backward(tr, det)
        return _coeffs_impl(tr, det)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):  # type: ignore[override]
        tr, det = ctx.saved_tensors
        grads = [torch.zeros_like(tr) if g is None else g for g in grads]
        g_tr = torch.empty_like(tr)
        g_det = torch.empty_like(det)
        ftr, fdet = tr.reshape(-1), det.reshape(-1)
        fg = [g.reshape(-1) for g in grads]
        out_tr, out_det = g_tr.view(-1), g_det.view(-1)
        chunk = 1 << 16
        for s in range(0, ftr.numel(), chunk):
            ga, gb = _coeffs_vjp(
                ftr[s : s + chunk], fdet[s : s + chunk], [g[s : s + chunk] for g in fg]
            )
            out_tr[s : s + chunk] = ga
            out_det[s : s + chunk] = gb
        return g_tr, g_det


def exp_phi_coeffs(tr: torch.Tensor, det: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Cayley-Hamilton coefficients of exp and phi_1 for 2x2 matrices Z.

    Args:
        tr: trace of Z, any shape.
        det: determinant of Z, same shape.

    Returns:
        (e0, e1, f0, f1), each shaped like ``tr``, with ``exp(Z) = e0 I + e1 Z`` and
        ``phi_1(Z) = f0 I + f1 Z``. Differentiable (first order) in tr and det.
    """
    if tr.requires_grad or det.requires_grad:
        return _Coeffs.apply(tr, det)
    return _coeffs_impl(tr, det)


def affine_flow(
    x: torch.Tensor,
    m: torch.Tensor,
    b: torch.Tensor,
    t: torch.Tensor | None,
    coeffs: tuple[torch.Tensor, torch.Tensor] | None = None,
    velocity: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Exact solution of dx/dt = M x + b after time t, elementwise over leading dims.

    Args:
        x: (..., 2) start points.
        m: (..., 2, 2) linear parts.
        b: (..., 2) offsets.
        t: (...) durations (may be 0); ``None`` means 1 (then ``coeffs`` is required).
        coeffs: optional precomputed (f0, f1) of phi_1(t M), e.g. gathered from per-cell
            values when every t is the same.
        velocity: whether to also return v(x(t)) (else ``None``).

    Returns:
        (x(t), v(x(t))), both (..., 2).
    """
    m00, m01, m10, m11 = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    if coeffs is None:
        tr, det = t * (m00 + m11), t * t * (m00 * m11 - m01 * m10)
        if tr.requires_grad or det.requires_grad:
            _, _, f0, f1 = exp_phi_coeffs(tr, det)
        else:  # no graph: skip the exp pair's last squaring (same f0, f1)
            _, _, f0, f1 = _coeffs_impl(tr, det, need_e=False)
    else:
        f0, f1 = coeffs
    x0, x1 = x[..., 0], x[..., 1]
    v0 = m00 * x0 + m01 * x1 + b[..., 0]
    v1 = m10 * x0 + m11 * x1 + b[..., 1]
    # x(t) = x0 + t phi_1(tM) v0 = x0 + t f0 v0 + t^2 f1 M v0
    c0, c1 = (f0, f1) if t is None else (t * f0, t * t * f1)
    y0 = x0 + c0 * v0 + c1 * (m00 * v0 + m01 * v1)
    y1 = x1 + c0 * v1 + c1 * (m10 * v0 + m11 * v1)
    if not velocity:
        return torch.stack([y0, y1], -1), None
    w0 = m00 * y0 + m01 * y1 + b[..., 0]
    w1 = m10 * y0 + m11 * y1 + b[..., 1]
    return torch.stack([y0, y1], -1), torch.stack([w0, w1], -1)
