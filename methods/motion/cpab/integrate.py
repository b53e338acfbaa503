"""Integration of CPA velocity fields: exact closed form and the release's fixed-step scheme.

All functions take per-cell affine matrices ``A`` of shape (B, C, 2, 3) (one field per batch
entry) and points of shape (B, N, 2) in [-1, 1]^2, x first; they return T(points) of the same
shape, differentiable in both A and the points.
"""

from __future__ import annotations

import functools
import math

import torch

from .expm import _coeffs_impl, affine_flow, exp_phi_coeffs
from .tessellation import Tessellation

_INSIDE_TOL = 1e-12  # slack when testing whether an end point is still in its cell
_HIT_TOL = 1e-11  # edge residual (normalised units) at which a hit time counts as converged
_HIT_ITERS = 60  # bound on safeguarded iterations per crossing (bisection needs ~50)


@functools.lru_cache(maxsize=64)
def _regions(tess: Tessellation) -> tuple[torch.Tensor, torch.Tensor]:
    edges, nbr = tess.cell_regions()
    return torch.as_tensor(edges, dtype=torch.float64), torch.as_tensor(nbr)


def _take(i: torch.Tensor, *ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Rows ``i`` of each tensor (index_select: much faster than advanced indexing on CPU)."""
    return tuple(t.index_select(0, i) for t in ts)


def _edge_values(edges: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(P, 4, 3) half-planes, (P, 2) points -> (P, 4) signed violations n.p - h."""
    return edges[..., 0] * p[:, None, 0] + edges[..., 1] * p[:, None, 1] - edges[..., 2]


def _hit_times(x, m, b, t_end, edges):
    """First time in (0, t_end] at which each trajectory leaves its cell.

    Safeguarded Halley/Newton iteration on g(t) = max over edges of n.x(t) - h, bracketed by
    [lo, hi] with g(hi) > 0, bisecting when a step leaves the bracket or stalls.

    Returns (t, edge slot crossed, exit point). Velocity continuity makes the result's
    derivative irrelevant for gradients (the hit-time terms of adjacent cells cancel), so
    no graph is kept. Only unconverged points are iterated.
    """
    # Start at the first exit of the second-order Taylor trajectory
    # x0 + t v0 + t^2/2 M v0: per edge, the smallest positive root of
    # (n.Mv0 / 2) t^2 + (n.v0) t - gap = 0, written in the cancellation-free form.
    v0 = torch.einsum("pij,pj->pi", m, x) + b
    a0 = torch.einsum("pij,pj->pi", m, v0)
    rate = edges[..., 0] * v0[:, None, 0] + edges[..., 1] * v0[:, None, 1]
    curv = 0.5 * (edges[..., 0] * a0[:, None, 0] + edges[..., 1] * a0[:, None, 1])
    gap = (-_edge_values(edges, x)).clamp_min(0)
    disc = rate * rate + 4 * curv * gap
    sq = disc.clamp_min(0).sqrt()
    # Outward rate: 2 gap / (rate + sq). Inward rate (e.g. on the entry edge, gap = 0):
    # the root after turning back, (sq - rate) / (2 curv).
    root = torch.where(
        rate > 0,
        2 * gap / (rate + sq).clamp_min(1e-300),
        (sq - rate) / (2 * curv).clamp_min(1e-300),
    )
    valid = (disc >= 0) & ((rate > 0) | (curv > 0))
    guess = torch.where(valid, root, torch.full_like(root, float("inf")))
    t = guess.min(-1).values.minimum(t_end)
    t = torch.where(torch.isfinite(t), t, 0.5 * t_end)
    # Results; points that never converge keep hi, the earliest time known to be outside.
    t_out = t_end.clone()
    y_out = torch.empty_like(x)
    e_out = torch.zeros_like(t_end, dtype=torch.long)
    conv_out = torch.zeros_like(t_end, dtype=torch.bool)
    # Working set, physically compacted as points finish (no scatter back per iteration).
    # Each evaluation advances from the last evaluated point (pw at time sw): the flow is
    # a group, x(t) = Phi_{t - s}(x(s)), and the short steps need a short series.
    idx = torch.arange(x.shape[0], device=x.device)
    pw, mw, bw, ew, tw = x, m, b, edges, t
    sw = torch.zeros_like(t)
    lo = torch.zeros_like(t_end)
    hi = t_end.clone()
    g_prev = torch.full_like(t_end, float("inf"))
    for _ in range(_HIT_ITERS):
        y, vy = affine_flow(pw, mw, bw, tw - sw)
        g, e = _edge_values(ew, y).max(-1)
        out = g > 0
        hi = torch.where(out, torch.minimum(hi, tw), hi)
        lo = torch.where(out, lo, torch.maximum(lo, tw))
        ga = g.abs()
        conv = ga <= _HIT_TOL
        done = conv | (hi - lo <= 1e-15)
        ne = ew.gather(1, e[:, None, None].expand(-1, 1, 3))[:, 0]
        dg = ne[:, 0] * vy[:, 0] + ne[:, 1] * vy[:, 1]
        # Halley step (cubic convergence): g'' = n.M v along the trajectory.
        av = torch.einsum("pij,pj->pi", mw, vy)
        d2g = ne[:, 0] * av[:, 0] + ne[:, 1] * av[:, 1]
        den = 2 * dg * dg - g * d2g
        rising = dg > 0
        halley = rising & (den > 0)
        tn = tw - torch.where(
            halley,
            2 * g * dg / torch.where(halley, den, 1.0),
            g / torch.where(rising, dg, 1.0),
        )
        # Bisect when the step leaves the bracket or |g| failed to halve (e.g. starting
        # near a peak of g, where g' ~ 0 makes Newton/Halley steps tiny).
        slow = ga > 0.5 * g_prev
        ok = rising & (tn >= lo) & (tn <= hi) & ~slow
        tn = torch.where(ok, tn, 0.5 * (lo + hi))
        dn = done.nonzero().squeeze(1)
        if dn.numel():
            di = idx.index_select(0, dn)
            cv = conv.index_select(0, dn)
            t_out[di] = torch.where(cv, tw.index_select(0, dn), hi.index_select(0, dn))
            y_out[di] = y.index_select(0, dn)
            e_out[di] = e.index_select(0, dn)
            conv_out[di] = cv
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            idx, mw, bw, ew, pw, sw = _take(keep, idx, mw, bw, ew, y, tw)
            tw, lo, hi, g_prev = _take(keep, tn, lo, hi, ga)
        else:
            pw, sw = y, tw
            tw, g_prev = tn, ga
    else:
        t_out[idx] = hi
    # Converged points keep their Newton iterate; the rest (bracket collapsed) take hi:
    # recompute their exit point and edge there.
    rest = (~conv_out).nonzero().squeeze(1)
    if rest.numel():
        yr, _ = affine_flow(*_take(rest, x, m, b, t_out))
        y_out[rest] = yr
        e_out[rest] = _edge_values(edges.index_select(0, rest), yr).argmax(-1)
    return t_out, e_out, y_out


def _cell_coeffs(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """phi_1 coefficients (f0, f1) of every cell's M over the full unit time, (B C,) each."""
    m = flat[:, :, :2]
    tr = m[:, 0, 0] + m[:, 1, 1]
    det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    _, _, f0, f1 = exp_phi_coeffs(tr, det)
    return f0, f1


def _excursions(x, m, b, t_end, v0, vy, edges):
    """End time capped at the peak of any edge crossed and re-crossed within (0, t_end].

    An edge function f(t) = n.x(t) - h that is <= 0 at both ends can still peak above 0 in
    between; then f' = n.v changes sign from + to -. We locate that peak per edge by a
    bracketed Newton search on f' (f'' = n.M v) and report the peak time where f > 0
    (else t_end). Exact as long as n.v changes sign at most once in (0, t_end], which
    :func:`_plan` ensures by limiting segment durations (:func:`_rotation_limit`).
    """
    nrm = edges[..., :2]
    r0 = edges[..., 0] * v0[:, None, 0] + edges[..., 1] * v0[:, None, 1]
    r1 = edges[..., 0] * vy[:, None, 0] + edges[..., 1] * vy[:, None, 1]
    cand = (r0 > 0) & (r1 < 0)
    out = t_end.clone()
    pi, ei = cand.nonzero(as_tuple=True)
    if pi.numel() == 0:
        return out
    # Cheap rigorous filter: with mu = |M|_F >= |M|_2 and T = t_end,
    # |n.v(s) - n.v0| <= |n| |v0| (e^{mu s} - 1), so on [0, T]
    # f <= f(0) + T n.v0 + |n| |v0| T^2 e^{mu T} / 2. Pairs whose bound stays below the
    # tolerance cannot peak outside and need no search.
    te = t_end.index_select(0, pi)
    mp = m.index_select(0, pi)
    mu = mp.square().sum((1, 2)).sqrt()
    f0 = nrm[pi, ei, 0] * x[pi, 0] + nrm[pi, ei, 1] * x[pi, 1] - edges[pi, ei, 2]
    vn = v0.index_select(0, pi).norm(dim=-1)
    slack = nrm[pi, ei].norm(dim=-1) * vn * te * te * (mu * te).exp()
    bound = f0 + 1.001 * (te * r0[pi, ei] + 0.5 * slack)
    keep = (bound > 0.5 * _INSIDE_TOL).nonzero().squeeze(1)
    if keep.numel() == 0:
        return out
    pi, ei = pi.index_select(0, keep), ei.index_select(0, keep)
    xs, ms, bs, vs = _take(pi, x, m, b, v0)
    n = nrm[pi, ei]
    h = edges[pi, ei, 2]
    tr = ms[:, 0, 0] + ms[:, 1, 1]
    det = ms[:, 0, 0] * ms[:, 1, 1] - ms[:, 0, 1] * ms[:, 1, 0]
    lo = torch.zeros_like(h)
    hi = t_end.index_select(0, pi).clone()
    # Start at the secant root of f' = n.v between its values at 0 (> 0) and t_end (< 0).
    q0, q1 = r0[pi, ei], r1[pi, ei]
    t = hi * (q0 / (q0 - q1)).clamp(0.01, 0.99)
    mv = torch.einsum("pij,pj->pi", ms, vs)  # loop-invariant
    for _ in range(_HIT_ITERS):
        e0, e1, _, _ = _coeffs_impl(t * tr, t * t * det, need_f=False)  # no graph here
        vt = e0[:, None] * vs + (t * e1)[:, None] * mv  # v(t) = exp(tM) v0
        d1 = (n * vt).sum(-1)
        d2 = (n * torch.einsum("pij,pj->pi", ms, vt)).sum(-1)
        pos, neg = d1 > 0, d2 < 0
        lo = torch.where(pos, t, lo)
        hi = torch.where(pos, hi, t)
        tn = t - d1 / torch.where(neg, d2, -1.0)
        tn = torch.where(neg & (tn >= lo) & (tn <= hi), tn, 0.5 * (lo + hi))
        step = (tn - t).abs()
        t = tn
        # The peak time only needs to be good enough for the sign of f at the peak:
        # f's error there is O(f'' dt^2), negligible once Newton steps reach 1e-9.
        if bool((step <= 1e-9).all()):
            break
    y, _ = affine_flow(xs, ms, bs, t)
    peak = (n * y).sum(-1) - h
    hit = peak > _INSIDE_TOL
    out.scatter_reduce_(0, pi[hit], t[hit], reduce="amin")
    return out


def _rotation_limit(m: torch.Tensor) -> torch.Tensor:
    """Longest time over which n.v(t) changes sign at most once, for every edge normal n.

    With complex eigenvalues s +- i w, n.v(t) = e^{st} R cos(w t + phi) has zeros spaced pi/w;
    with real ones it has at most one. Segments no longer than half that spacing let
    :func:`_excursions` see every edge peak (it looks for one + to - change of n.v).
    """
    tr = m[:, 0, 0] + m[:, 1, 1]
    det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    w = (det - tr * tr / 4).clamp_min(0).sqrt()
    return torch.where(w > 0, (0.5 * math.pi) / w.clamp_min(1e-300), torch.full_like(w, math.inf))


def _plan(
    points: torch.Tensor, a: torch.Tensor, tess: Tessellation, max_cross: int, compiled: bool
):
    """Phase 1 (float64, no graph): the sequence of (points, cell, duration) segments.

    A segment ends where the trajectory leaves its cell, or earlier where the cell's flow
    rotates fast (:func:`_rotation_limit`): such a point continues in the same cell.
    ``compiled``: run the per-point numba version of this search (:mod:`.plan_compiled`, CPU).
    """
    bsz, n, _ = points.shape
    ncell = tess.num_cells
    edges_all, nbr_all = _regions(tess)
    edges_all, nbr_all = edges_all.to(points.device), nbr_all.to(points.device)
    flat = a.reshape(-1, 2, 3)
    flat_m = flat[:, :, :2].contiguous()
    limit = _rotation_limit(flat_m)  # per global cell
    # Sub-steps of fast-rotating cells do not count as crossings: budget for them apart.
    finite = limit[torch.isfinite(limit)]
    sub_steps = int(math.ceil(1.0 / float(finite.min()))) if finite.numel() else 0
    last = max_cross + sub_steps
    if compiled:
        from .plan_compiled import plan_compiled  # numba: imported (and compiled) on first use

        return plan_compiled(
            points,
            a,
            tess.kind,
            tess.nx,
            tess.ny,
            edges_all,
            nbr_all,
            limit,
            last,
            _INSIDE_TOL,
            _HIT_TOL,
            _HIT_ITERS,
        )
    flat_b = flat[:, :, 2].contiguous()
    x = points.reshape(-1, 2).clone()
    bidx = torch.arange(bsz, device=points.device).repeat_interleave(n)
    cell = tess.cell_index(x)
    rem = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
    active = torch.arange(x.shape[0], device=x.device)
    cell_co = _cell_coeffs(flat)
    segments = []
    for k in range(last + 1):
        if k == 0:
            xa, ca, ra = x.clone(), cell, rem
            g = bidx * ncell + ca
        else:
            xa, ca, ra = _take(active, x, cell, rem)
            g = bidx.index_select(0, active) * ncell + ca
        m, b = flat_m.index_select(0, g), flat_b.index_select(0, g)
        step = ra if k == last else torch.minimum(ra, limit.index_select(0, g))
        limited = step < ra
        # Before any crossing every duration is 1: per-cell series, gathered.
        co = tuple(c[g] for c in cell_co) if k == 0 and not bool(limited.any()) else None
        y, vy = affine_flow(xa, m, b, step, co)
        ed = edges_all.index_select(0, ca)
        inside = _edge_values(ed, y).max(-1).values <= _INSIDE_TOL
        # An edge crossed and re-crossed before t_end must be found first, whether or not
        # the end point is inside: it caps the hit-time bracket at that edge's peak.
        v0 = torch.einsum("pij,pj->pi", m, xa) + b
        t_end = _excursions(xa, m, b, step, v0, vy, ed)
        inside = inside & (t_end >= step)
        if k == last:
            inside = torch.ones_like(inside)  # give up crossing; finish in current cell
        dur = step.clone()
        cross = (~inside).nonzero().squeeze(1)
        ins = inside.nonzero().squeeze(1)
        x[active.index_select(0, ins)] = y.index_select(0, ins)
        # Inside after a rotation-limited sub-step: same cell, the rest of the time to go.
        cont = (inside & limited).nonzero().squeeze(1)
        rem[active.index_select(0, cont)] = (ra - step).index_select(0, cont)
        if cross.numel():
            th, eh, yh = _hit_times(*_take(cross, xa, m, b, t_end, ed))
            dur[cross] = th
            ic = active.index_select(0, cross)
            x[ic] = yh
            rem[ic] = ra.index_select(0, cross) - th
            # Next cell: where the trajectory goes from the exit point, found by nudging
            # 1e-9 along the velocity. The edge's neighbour alone is ambiguous at vertices.
            mc, bc, cc = _take(cross, m, b, ca)
            vh = torch.einsum("pij,pj->pi", mc, yh) + bc
            speed = vh.norm(dim=-1, keepdim=True)
            probe = tess.cell_index(yh + vh * (1e-9 / speed.clamp_min(1e-300)))
            nxt = nbr_all[cc, eh]
            nxt = torch.where(nxt >= 0, nxt, cc)
            cell[ic] = torch.where(speed[:, 0] > 1e-12, probe, nxt)
        segments.append((active, g, dur))
        active = active.index_select(0, torch.cat([cross, cont]).sort().values)
        if active.numel() == 0:
            break
    return segments, x.reshape(bsz, n, 2)


def plan_segments(
    points: torch.Tensor,
    a: torch.Tensor,
    tess: Tessellation,
    max_cross: int | None = None,
    compiled: bool | None = None,
):
    """Segments (point indices, global cell ids, durations) of each trajectory, plus end points.

    Float64, no graph. ``points`` (B, N, 2), ``a`` (B, C, 2, 3). Global cell id = b * C + c.
    ``compiled`` (default: on the CPU) runs the search per point with numba
    (:mod:`.plan_compiled`); else with tensor ops on the points' device.
    """
    if max_cross is None:
        max_cross = 4 * (tess.nx + tess.ny) + 8
    if compiled is None:
        compiled = points.device.type == "cpu"
    # inference_mode, not no_grad: the search is bound by per-op overhead, which it lowers
    # by ~10% (same values). Its tensors are cloned out so that a replay may use them in a graph.
    with torch.inference_mode():
        segments, end = _plan(
            points.detach().to(torch.float64),
            a.detach().to(torch.float64),
            tess,
            max_cross,
            compiled,
        )
    return [tuple(t.clone() for t in seg) for seg in segments], end.clone()


def replay_segments(points: torch.Tensor, a: torch.Tensor, segments) -> torch.Tensor:
    """Re-run planned segments with a graph (or with perturbed fields).

    ``a`` may carry extra trailing batch dims J: (B, C, J, 2, 3) with ``points`` (B, N, J, 2)
    replays the same plan for J fields at once (used for Jacobians). Hit times are
    constants: for a continuous field their first-order effect cancels, so gradients
    through this replay are exact.
    """
    bsz, n = points.shape[:2]
    x = points.to(torch.float64).reshape(bsz * n, *points.shape[2:])
    flat = a.to(torch.float64).reshape(-1, *a.shape[2:])
    unit = None
    ncells = flat.numel() // 6
    for idx, g, dur in segments:
        full = dur == 1
        nfull = int(full.sum()) * (flat[0].numel() // 6)
        if nfull > ncells:  # cheaper per cell only when cells are fewer than such points
            # Whole-time segments share per-cell coefficients (cheap, and still differentiable).
            if unit is None:
                unit = _cell_coeffs(flat.reshape(-1, *flat.shape[-2:]))
                unit = tuple(c.reshape(flat.shape[:-2]) for c in unit)
            i1, g1 = idx[full], g[full]
            ag = flat.index_select(0, g1)
            co = tuple(c.index_select(0, g1) for c in unit)
            xi = x.index_select(0, i1)
            y, _ = affine_flow(xi, ag[..., :2], ag[..., 2], None, co, velocity=False)
            x = x.index_copy(0, i1, y)
            keep = ~full
            idx, g, dur = idx[keep], g[keep], dur[keep]
            if idx.numel() == 0:
                continue
        ag = flat.index_select(0, g)
        t = dur.reshape(-1, *([1] * (ag.dim() - 3)))
        te = t.expand(ag.shape[:-2])
        y, _ = affine_flow(x.index_select(0, idx), ag[..., :2], ag[..., 2], te, velocity=False)
        x = x.index_copy(0, idx, y)
    return x.reshape(points.shape)


def integrate_closed_form(
    points: torch.Tensor, a: torch.Tensor, tess: Tessellation, max_cross: int | None = None
) -> torch.Tensor:
    """Exact T(points) = Lambda(points, 1) by per-cell analytic solutions and cell switching.

    Args:
        points: (B, N, 2) start points.
        a: (B, C, 2, 3) per-cell affine velocity matrices.
        tess: the tessellation ``a`` lives on.
        max_cross: bound on cell crossings per trajectory (default 4 (nx + ny) + 8).

    Returns:
        (B, N, 2) end points in ``points.dtype``; computed in float64.
    """
    segments, end = plan_segments(points, a, tess, max_cross)
    if not (torch.is_grad_enabled() and (points.requires_grad or a.requires_grad)):
        return end.to(points.dtype)
    return replay_segments(points, a, segments).to(points.dtype)


def integrate_numeric(
    points: torch.Tensor, a: torch.Tensor, tess: Tessellation, steps: int = 50
) -> torch.Tensor:
    """The CPAB release's scheme: ``steps`` steps of the per-cell exact step map exp(A/steps).

    The cell is looked up at the start of every step, so trajectories are only
    approximated near cell borders. Runs in ``points.dtype``; same shapes as
    :func:`integrate_closed_form`.
    """
    bsz, n, _ = points.shape
    ncell = tess.num_cells
    dt = 1.0 / steps
    m = a[..., :2] * dt
    tr = m[..., 0, 0] + m[..., 1, 1]
    det = m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]
    e0, e1, f0, f1 = exp_phi_coeffs(tr, det)
    eye = torch.eye(2, dtype=a.dtype, device=a.device)
    emat = e0[..., None, None] * eye + e1[..., None, None] * m  # exp(M dt)
    fmat = dt * (f0[..., None, None] * eye + f1[..., None, None] * m)
    off = torch.einsum("bcij,bcj->bci", fmat, a[..., 2])  # dt * phi_1(M dt) b
    step = torch.cat([emat, off[..., None]], dim=-1).reshape(bsz * ncell, 2, 3).to(points.dtype)
    x = points.reshape(-1, 2)
    base = torch.arange(bsz, device=points.device).repeat_interleave(n) * ncell
    for _ in range(steps):
        s = step[base + tess.cell_index(x)]
        x = torch.einsum("pij,pj->pi", s[:, :, :2], x) + s[:, :, 2]
    return x.reshape(points.shape)
