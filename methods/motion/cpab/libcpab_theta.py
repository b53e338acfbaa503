"""libcpab's coordinates of the velocity space: the theta the CPAB release optimises.

The release fits its transforms with libcpab (SkafteNicki/libcpab @aabfd9e, the submodule of
DevilPG/AAAI2024-CPABMM): Adam over theta on the domain [0, 1]^2, in the basis libcpab computes
as the null space of its constraint matrix. That is the same space of continuous
piecewise-affine fields as ours on [-1, 1]^2 (``tests/test_motion_cpab_libcpab.py``), but in other
coordinates: the map between the two thetas has singular values far from 1 (0.79-2.52 for the
4x4 local tessellation), and Adam, which steps every coordinate by about its learning rate, goes
elsewhere in each. Running Adam over libcpab's theta (mapped to ours for every evaluation)
reproduces the release's fit.

libcpab's basis is ``scipy.linalg.svd`` (LAPACK gesdd) of its constraint matrix, keeping the
right singular vectors of singular values <= 1e-6. The null space is degenerate (all its singular
values are 0), so its basis depends on the matrix's exact entries and row order (and could
depend on the LAPACK build): this module builds the matrix in libcpab's order (cells, shared
vertices as Python's set intersection lists them, the auxiliary vertices outside the domain)
and decomposes it the same way. Checked equal to libcpab's ``params.basis`` (0.0 difference,
``tests/test_motion_cpab_libcpab.py``; the PyPI ``libcpab==0.1.3`` builds the same matrix and
basis as the release's pinned libcpab).
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.linalg
import torch

from .tessellation import Tessellation

#: libcpab's threshold on singular values for the null space.
NULL_EPS = 1e-6


def _triangle_vertices(nx: int, ny: int) -> tuple[list[tuple[tuple[float, ...], ...]], list[tuple[int, int, int]]]:
    """Every triangle's vertices (x, y, 1) on [0, 1]^2 and its (column, row, triangle) label,
    in libcpab's order: squares row by row, and in each the top, right, bottom and left
    triangle, each listed from the square's centre clockwise."""
    xs = np.linspace(0.0, 1.0, nx + 1)
    ys = np.linspace(0.0, 1.0, ny + 1)
    verts, labels = [], []
    for row in range(ny):
        for col in range(nx):
            top_left = (xs[col], ys[row], 1.0)
            top_right = (xs[col + 1], ys[row], 1.0)
            bottom_left = (xs[col], ys[row + 1], 1.0)
            bottom_right = (xs[col + 1], ys[row + 1], 1.0)
            centre = ((xs[col] + xs[col + 1]) / 2, (ys[row] + ys[row + 1]) / 2, 1.0)
            corners = [top_left, top_right, bottom_right, bottom_left]
            for t in range(4):
                # through a float64 array and back, as libcpab stores and compares them
                tri = np.asarray([centre, corners[t], corners[(t + 1) % 4]], dtype=np.float64)
                verts.append(tuple(tuple(v.tolist()) for v in tri))
                labels.append((col, row, t))
    return verts, labels


def _shared_pairs(verts, labels, nx: int, ny: int, outside: bool) -> list[tuple[int, int, list]]:
    """(cell i, cell j, two vertices where their fields must agree), in libcpab's order: the
    pairs sharing an edge, then (when the field extends outside) the boundary pairs sharing
    one vertex, with an auxiliary vertex 10 away outside the domain."""
    n = len(verts)
    pairs: list[tuple[int, int, list]] = []
    seen: set[tuple[int, int]] = set()
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            # The order of the two shared vertices is Python's set order: it decides the
            # constraint rows, hence the basis libcpab's SVD returns.
            shared = set(verts[i]).intersection(verts[j])
            if len(shared) == 2 and (j, i) not in seen:
                pairs.append((i, j, list(shared)[:2]))
                seen.add((i, j))
    if not outside:
        return pairs
    seen_outside: set[tuple[int, int]] = set()
    for i in range(n):
        for j in range(n):
            (ci, ri, ti), (cj, rj, tj) = labels[i], labels[j]
            side = None
            if ci == cj == 0 and ti == tj == 3 and abs(ri - rj) == 1:
                side = "x"  # left column, left triangles of adjacent rows
            elif ci == cj == nx - 1 and ti == tj == 1 and abs(ri - rj) == 1:
                side = "x"  # right column
            elif ri == rj == 0 and ti == tj == 0 and abs(ci - cj) == 1:
                side = "y"  # top row
            elif ri == rj == ny - 1 and ti == tj == 2 and abs(ci - cj) == 1:
                side = "y"  # bottom row
            shared = set(verts[i]).intersection(verts[j])
            if side is None or len(shared) != 1 or (j, i) in seen_outside:
                continue
            vertex = next(iter(shared))
            aux = list(vertex)
            aux[0 if side == "x" else 1] -= 10
            pairs.append((i, j, [vertex, tuple(aux)]))
            seen_outside.add((i, j))
    return pairs


def constraint_matrix(tess: Tessellation) -> np.ndarray:
    """libcpab's constraint matrix L (rows in its order) for ``tess`` (triangles only)."""
    if tess.kind != "triangles":
        raise ValueError("libcpab's coordinates exist for the triangle tessellation only")
    verts, labels = _triangle_vertices(tess.nx, tess.ny)
    n = len(verts)
    rows = []
    for i, j, shared in _shared_pairs(verts, labels, tess.nx, tess.ny, outside=tess.outside):
        for vertex in shared:
            for k in range(2):  # both components of the velocity
                row = np.zeros(6 * n)
                row[6 * i + 3 * k : 6 * i + 3 * k + 3] = vertex
                row[6 * j + 3 * k : 6 * j + 3 * k + 3] = -np.asarray(vertex)
                rows.append(row)
    if tess.zero_boundary:
        for c in range(n):
            for vertex in verts[c]:
                if vertex[0] in (0.0, 1.0):
                    row = np.zeros(6 * n)
                    row[6 * c : 6 * c + 3] = vertex
                    rows.append(row)
                if vertex[1] in (0.0, 1.0):
                    row = np.zeros(6 * n)
                    row[6 * c + 3 : 6 * c + 6] = vertex
                    rows.append(row)
    if tess.volume_preserving:
        for c in range(n):
            row = np.zeros(6 * n)
            row[6 * c] = row[6 * c + 4] = 1.0
            rows.append(row)
    return np.asarray(rows)


@functools.lru_cache(maxsize=16)
def _basis_np(tess: Tessellation) -> np.ndarray:
    lmat = constraint_matrix(tess)
    _, s, vh = scipy.linalg.svd(lmat)  # gesdd, full matrices: libcpab's call
    null = np.concatenate([s <= NULL_EPS, np.ones(max(0, lmat.shape[1] - s.shape[0]), dtype=bool)])
    return np.ascontiguousarray(vh[null].T)


def libcpab_basis(tess: Tessellation) -> torch.Tensor:
    """(6 C, d) libcpab's basis on [0, 1]^2 (flat cell parameters = B theta_libcpab)."""
    return torch.tensor(_basis_np(tess), dtype=torch.float64)


def libcpab_to_ours(tess: Tessellation, basis: torch.Tensor) -> torch.Tensor:
    """(d, d) matrix P with theta_ours = P theta_libcpab for the same transformation.

    A cell's field u' = M u + b on [0, 1]^2 is, with x = 2u - 1, x' = M x + (2 b + M 1) on
    [-1, 1]^2: the flat parameters map cell by cell, and ``basis`` (ours, orthonormal) projects
    them onto our theta exactly, since both bases span the same space.
    """
    lib = libcpab_basis(tess)
    cells = lib.T.reshape(lib.shape[1], -1, 2, 3)
    m, b = cells[..., :2], cells[..., 2]
    ours_flat = torch.cat([m, (2 * b + m.sum(-1))[..., None]], -1).reshape(lib.shape[1], -1).T
    return basis.T @ ours_flat
