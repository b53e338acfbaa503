"""The hit-time search of :mod:`.integrate` compiled per point with numba (CPU).

The search (``integrate._plan``) needs no graph: it only decides, per trajectory, which cells
it visits and for how long. Written with PyTorch tensor ops it is bound by per-op overhead
(hundreds of small float64 ops per cell crossing, over a few thousand points). Here the same
algorithm runs as one scalar loop per point: the same per-cell exact flow (Cayley-Hamilton
series of exp and phi_1 with scaling and squaring), the same excursion check for edges crossed
and re-crossed within a step, the same safeguarded Halley iteration for exit times, the same
quarter-turn sub-steps in fast-rotating cells and the same next-cell probe. The results agree
with the tensor version to the search's tolerances (exit-time residual 1e-11; tested); they
are not bit-identical because each point chooses its own series length here, where the tensor
version uses the longest one its batch needs.

The segments come back in the tensor version's layout (one ``(points, global cells,
durations)`` triple per round), so :func:`.integrate.replay_segments` replays them with a graph
unchanged.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from .expm import _DEGREE, _INV_FACT, _MAX_DEGREE, _TRUNC

_INV = np.array(_INV_FACT, dtype=np.float64)
_SQUARES, _TRIANGLES = 0, 1


@numba.njit(cache=True, inline="always")
def _schedule(rho: float, inv: np.ndarray) -> tuple[int, int]:
    """:func:`.expm._schedule` for one spectral-radius bound."""
    k_min = 0
    if rho > 1.0:
        k_min = max(0, int(math.ceil(math.log2(rho))))
    best_cost, best_k, best_deg = -1, 0, _DEGREE
    for k in range(k_min, k_min + 3):
        r = rho / 2.0**k
        deg = -1
        for j in range(1, _MAX_DEGREE):
            if r ** (j + 1) * inv[j + 1] <= _TRUNC:
                deg = j
                break
        if deg < 0:
            continue
        cost = 2 * deg + 14 * k
        if best_cost < 0 or cost < best_cost:
            best_cost, best_k, best_deg = cost, k, deg
        if r <= 0.5:
            break
    return best_k, best_deg


@numba.njit(cache=True)
def _coeffs(tr: float, det: float, inv: np.ndarray) -> tuple[float, float, float, float]:
    """(e0, e1, f0, f1): exp(Z) = e0 I + e1 Z, phi_1(Z) = f0 I + f1 Z for trace tr, det det."""
    rho = math.sqrt(abs(tr * tr * 0.25 - det)) + 0.5 * abs(tr)
    if not math.isfinite(rho):
        rho = 0.0
    k, deg = _schedule(min(rho, 1e300), inv)
    t = tr / 2.0**k
    d = det / 4.0**k
    alpha, beta = inv[deg], 0.0
    for j in range(deg - 1, -1, -1):
        alpha, beta = inv[j] - beta * d, alpha + beta * t
    f0, f1 = alpha, beta
    e0 = inv[0] - beta * d
    e1 = alpha + beta * t
    for _ in range(k):
        e1d = e1 * d
        a1 = e0 + 1.0
        f0, f1 = 0.5 * (a1 * f0 - e1d * f1), 0.25 * (a1 * f1 + e1 * f0 + e1 * f1 * t)
        e0, e1 = e0 * e0 - e1d * e1, e1 * (e0 + 0.5 * e1 * t)
        t = 2.0 * t
        d = 4.0 * d
    return e0, e1, f0, f1


@numba.njit(cache=True)
def _flow(x0, x1, m, b, t, inv):
    """Exact x(t) and v(x(t)) of dx/dt = M x + b from (x0, x1); m = (m00, m01, m10, m11)."""
    m00, m01, m10, m11 = m[0], m[1], m[2], m[3]
    _, _, f0, f1 = _coeffs(t * (m00 + m11), t * t * (m00 * m11 - m01 * m10), inv)
    v0 = m00 * x0 + m01 * x1 + b[0]
    v1 = m10 * x0 + m11 * x1 + b[1]
    c0, c1 = t * f0, t * t * f1
    y0 = x0 + c0 * v0 + c1 * (m00 * v0 + m01 * v1)
    y1 = x1 + c0 * v1 + c1 * (m10 * v0 + m11 * v1)
    return y0, y1, m00 * y0 + m01 * y1 + b[0], m10 * y0 + m11 * y1 + b[1]


@numba.njit(cache=True)
def _cell_index(x, y, nx, ny, kind):
    fx = (x + 1.0) * (nx / 2.0)
    fy = (y + 1.0) * (ny / 2.0)
    ix = min(max(math.floor(fx), 0.0), nx - 1.0)
    iy = min(max(math.floor(fy), 0.0), ny - 1.0)
    sq = int(iy) * nx + int(ix)
    if kind == _SQUARES:
        return sq
    u = 2.0 * (fx - ix) - 1.0
    w = 2.0 * (fy - iy) - 1.0
    if abs(u) > abs(w):
        t = 1 if u > 0 else 3
    else:
        t = 2 if w > 0 else 0
    return 4 * sq + t


@numba.njit(cache=True)
def _max_edge(ed, y0, y1):
    """max over slots of n.y - h and its first arg-max."""
    best, arg = -np.inf, 0
    for s in range(ed.shape[0]):
        v = ed[s, 0] * y0 + ed[s, 1] * y1 - ed[s, 2]
        if v > best:
            best, arg = v, s
    return best, arg


@numba.njit(cache=True)
def _excursion(x0, x1, m, b, t_end, v0, v1, w0, w1, ed, inside_tol, inv):
    """End time capped at the peak of any edge crossed and re-crossed in (0, t_end]."""
    out = t_end
    mu = math.sqrt(m[0] * m[0] + m[1] * m[1] + m[2] * m[2] + m[3] * m[3])
    tr = m[0] + m[3]
    det = m[0] * m[3] - m[1] * m[2]
    mv0 = m[0] * v0 + m[1] * v1
    mv1 = m[2] * v0 + m[3] * v1
    vn = math.sqrt(v0 * v0 + v1 * v1)
    for s in range(ed.shape[0]):
        n0, n1, h = ed[s, 0], ed[s, 1], ed[s, 2]
        q0 = n0 * v0 + n1 * v1
        q1 = n0 * w0 + n1 * w1
        if not (q0 > 0 and q1 < 0):
            continue
        # Rigorous filter: f <= f(0) + T n.v0 + |n| |v0| T^2 e^{mu T} / 2 on [0, T].
        f0 = n0 * x0 + n1 * x1 - h
        slack = math.sqrt(n0 * n0 + n1 * n1) * vn * t_end * t_end * math.exp(mu * t_end)
        if not (f0 + 1.001 * (t_end * q0 + 0.5 * slack) > 0.5 * inside_tol):
            continue
        lo, hi = 0.0, t_end
        t = hi * min(max(q0 / (q0 - q1), 0.01), 0.99)
        for _ in range(60):
            e0, e1, _, _ = _coeffs(t * tr, t * t * det, inv)
            vt0 = e0 * v0 + t * e1 * mv0
            vt1 = e0 * v1 + t * e1 * mv1
            d1 = n0 * vt0 + n1 * vt1
            d2 = n0 * (m[0] * vt0 + m[1] * vt1) + n1 * (m[2] * vt0 + m[3] * vt1)
            if d1 > 0:
                lo = t
            else:
                hi = t
            tn = t - d1 / (d2 if d2 < 0 else -1.0)
            if not (d2 < 0 and lo <= tn <= hi):
                tn = 0.5 * (lo + hi)
            step = abs(tn - t)
            t = tn
            if step <= 1e-9:
                break
        y0, y1, _, _ = _flow(x0, x1, m, b, t, inv)
        if n0 * y0 + n1 * y1 - h > inside_tol and t < out:
            out = t
    return out


@numba.njit(cache=True)
def _hit_time(x0, x1, m, b, t_end, ed, hit_tol, hit_iters, inv):
    """First exit time in (0, t_end], the edge slot crossed and the exit point."""
    v0 = m[0] * x0 + m[1] * x1 + b[0]
    v1 = m[2] * x0 + m[3] * x1 + b[1]
    a0 = m[0] * v0 + m[1] * v1
    a1 = m[2] * v0 + m[3] * v1
    t = np.inf
    for s in range(ed.shape[0]):
        n0, n1, h = ed[s, 0], ed[s, 1], ed[s, 2]
        rate = n0 * v0 + n1 * v1
        curv = 0.5 * (n0 * a0 + n1 * a1)
        gap = max(-(n0 * x0 + n1 * x1 - h), 0.0)
        disc = rate * rate + 4.0 * curv * gap
        sq = math.sqrt(max(disc, 0.0))
        if rate > 0:
            root = 2.0 * gap / max(rate + sq, 1e-300)
        else:
            root = (sq - rate) / max(2.0 * curv, 1e-300)
        if disc >= 0 and (rate > 0 or curv > 0) and root < t:
            t = root
    t = min(t, t_end)
    if not math.isfinite(t):
        t = 0.5 * t_end
    lo, hi = 0.0, t_end
    g_prev = np.inf
    pw0, pw1, sw = x0, x1, 0.0
    t_out, e_out, y0_out, y1_out, conv_out = hi, 0, x0, x1, False
    finished = False
    for _ in range(hit_iters):
        y0, y1, vy0, vy1 = _flow(pw0, pw1, m, b, t - sw, inv)
        g, e = _max_edge(ed, y0, y1)
        if g > 0:
            hi = min(hi, t)
        else:
            lo = max(lo, t)
        ga = abs(g)
        conv = ga <= hit_tol
        if conv or hi - lo <= 1e-15:
            t_out = t if conv else hi
            y0_out, y1_out, e_out, conv_out = y0, y1, e, conv
            finished = True
            break
        n0, n1 = ed[e, 0], ed[e, 1]
        dg = n0 * vy0 + n1 * vy1
        d2g = n0 * (m[0] * vy0 + m[1] * vy1) + n1 * (m[2] * vy0 + m[3] * vy1)
        den = 2.0 * dg * dg - g * d2g
        rising = dg > 0
        if rising and den > 0:
            tn = t - 2.0 * g * dg / den
        elif rising:
            tn = t - g / dg
        else:
            tn = t - g
        slow = ga > 0.5 * g_prev
        if not (rising and lo <= tn <= hi and not slow):
            tn = 0.5 * (lo + hi)
        pw0, pw1, sw = y0, y1, t
        t = tn
        g_prev = ga
    if not finished:
        t_out = hi
    if not conv_out:
        # The bracket collapsed (or the budget ran out): take hi, from the start point.
        y0_out, y1_out, _, _ = _flow(x0, x1, m, b, t_out, inv)
        _, e_out = _max_edge(ed, y0_out, y1_out)
    return t_out, e_out, y0_out, y1_out


@numba.njit(cache=True)
def _plan_points(
    points, mats, offs, limit, edges, nbr, nx, ny, kind, last, inside_tol, hit_tol, hit_iters, inv
):
    """Per point, every segment: (point, round, global cell, duration) records and end points."""
    npts = points.shape[0]
    ncell = edges.shape[0]
    per_field = points.shape[1]
    cap = max(16, 4 * npts * per_field)
    rec_p = np.empty(cap, dtype=np.int64)
    rec_k = np.empty(cap, dtype=np.int64)
    rec_g = np.empty(cap, dtype=np.int64)
    rec_d = np.empty(cap, dtype=np.float64)
    nrec = 0
    end = np.empty((npts, per_field, 2), dtype=np.float64)
    for bi in range(npts):
        for pi in range(per_field):
            x0, x1 = points[bi, pi, 0], points[bi, pi, 1]
            cell = _cell_index(x0, x1, nx, ny, kind)
            rem = 1.0
            for k in range(last + 1):
                g = bi * ncell + cell
                m = mats[g]
                b = offs[g]
                step = rem if k == last else min(rem, limit[g])
                limited = step < rem
                y0, y1, w0, w1 = _flow(x0, x1, m, b, step, inv)
                ed = edges[cell]
                val, _ = _max_edge(ed, y0, y1)
                inside = val <= inside_tol
                v0 = m[0] * x0 + m[1] * x1 + b[0]
                v1 = m[2] * x0 + m[3] * x1 + b[1]
                t_end = _excursion(x0, x1, m, b, step, v0, v1, w0, w1, ed, inside_tol, inv)
                inside = inside and t_end >= step
                if k == last:
                    inside = True
                dur = step
                more = False
                if inside:
                    x0, x1 = y0, y1
                    if limited:
                        rem = rem - step
                        more = True
                else:
                    th, eh, yh0, yh1 = _hit_time(x0, x1, m, b, t_end, ed, hit_tol, hit_iters, inv)
                    dur = th
                    rem = rem - th
                    x0, x1 = yh0, yh1
                    # Next cell: where the trajectory goes from the exit point (a 1e-9 nudge
                    # along the velocity); the edge's neighbour alone is ambiguous at vertices.
                    vh0 = m[0] * yh0 + m[1] * yh1 + b[0]
                    vh1 = m[2] * yh0 + m[3] * yh1 + b[1]
                    speed = math.sqrt(vh0 * vh0 + vh1 * vh1)
                    if speed > 1e-12:
                        nudge = 1e-9 / max(speed, 1e-300)
                        cell = _cell_index(yh0 + vh0 * nudge, yh1 + vh1 * nudge, nx, ny, kind)
                    elif nbr[cell, eh] >= 0:
                        cell = nbr[cell, eh]
                    more = True
                if nrec == cap:
                    cap *= 2
                    rec_p = _grow(rec_p, cap)
                    rec_k = _grow(rec_k, cap)
                    rec_g = _grow(rec_g, cap)
                    rec_d = _grow(rec_d, cap)
                rec_p[nrec] = bi * per_field + pi
                rec_k[nrec] = k
                rec_g[nrec] = g
                rec_d[nrec] = dur
                nrec += 1
                if not more:
                    break
            end[bi, pi, 0] = x0
            end[bi, pi, 1] = x1
    return rec_p[:nrec], rec_k[:nrec], rec_g[:nrec], rec_d[:nrec], end


@numba.njit(cache=True)
def _grow(a, cap):
    out = np.empty(cap, dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def plan_compiled(
    points: torch.Tensor,
    a: torch.Tensor,
    kind: str,
    nx: int,
    ny: int,
    edges: torch.Tensor,
    nbr: torch.Tensor,
    limit: torch.Tensor,
    last: int,
    inside_tol: float,
    hit_tol: float,
    hit_iters: int,
) -> tuple[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Segments and end points of ``integrate._plan`` for float64 CPU tensors.

    ``points`` (B, N, 2), ``a`` (B, C, 2, 3); ``limit`` the per-global-cell rotation limits and
    ``last`` the final round index, as ``_plan`` computes them.
    """
    flat = a.reshape(-1, 2, 3)
    mats = np.ascontiguousarray(flat[:, :, :2].reshape(-1, 4).numpy())
    offs = np.ascontiguousarray(flat[:, :, 2].numpy())
    rec_p, rec_k, rec_g, rec_d, end = _plan_points(
        np.ascontiguousarray(points.numpy()),
        mats,
        offs,
        np.ascontiguousarray(limit.numpy()),
        np.ascontiguousarray(edges.numpy()),
        np.ascontiguousarray(nbr.numpy()),
        int(nx),
        int(ny),
        _SQUARES if kind == "squares" else _TRIANGLES,
        int(last),
        float(inside_tol),
        float(hit_tol),
        int(hit_iters),
        _INV,
    )
    # Group by round; within a round, points ascending (records were made point by point).
    order = np.argsort(rec_k, kind="stable")
    rec_p, rec_k, rec_g, rec_d = rec_p[order], rec_k[order], rec_g[order], rec_d[order]
    bounds = np.searchsorted(rec_k, np.arange(int(rec_k[-1]) + 2 if rec_k.size else 0))
    segments = []
    for k in range(len(bounds) - 1):
        s, e = int(bounds[k]), int(bounds[k + 1])
        # Views of the sorted records: plan_segments clones what it returns.
        segments.append(
            (
                torch.from_numpy(rec_p[s:e]),
                torch.from_numpy(rec_g[s:e]),
                torch.from_numpy(rec_d[s:e]),
            )
        )
    return segments, torch.from_numpy(end)
