"""Tessellations of the domain [-1, 1]^2 and the linear constraints on their fields.

Coordinates follow ``torch.nn.functional.grid_sample``: a point is (x, y) with x the
column coordinate, both in [-1, 1]; y grows downwards. A velocity field is stored per
cell as a 2x3 matrix A_c with v(p) = A_c [x, y, 1]^T; the flat parameter vector has
length 6 * num_cells with cell c at [6c, 6c + 6) and row k of A_c at [6c + 3k, 6c + 3k + 3)
(libcpab's layout).

Cell numbering
--------------
* ``squares``: cell = iy * nx + ix.
* ``triangles``: each square is split by its diagonals into 4 triangles; cell =
  4 * (iy * nx + ix) + t with t = 0 top (towards smaller y), 1 right, 2 bottom, 3 left,
  as in libcpab.

Outside the domain a point belongs to the nearest boundary cell's extension (clamp the
square, then pick the triangle by the dominant axis from the square's centre). This
matches libcpab's ``findcellidx``, so fields extend continuously outside when the
``extend_outside`` constraint is on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_KINDS = ("triangles", "squares")


@dataclass(frozen=True)
class Tessellation:
    """An nx x ny grid of cells on [-1, 1]^2 plus the constraints defining the velocity space.

    Args:
        nx: number of cell columns (x direction).
        ny: number of cell rows (y direction).
        kind: ``"triangles"`` (4 per square, libcpab / the CPAB release) or ``"squares"``
            (Freifeld et al.'s type-II).
        zero_boundary: libcpab's "zero boundary": the velocity component normal to the
            domain edge is zero at every boundary vertex, so the domain maps onto itself.
        volume_preserving: every cell's linear part has zero trace.
        extend_outside: continuity of the field extended outside the domain. ``None``
            means libcpab's rule: on iff not ``zero_boundary``. Only adds constraints for
            triangles (squares extend continuously by construction).
    """

    nx: int
    ny: int
    kind: str = "triangles"
    zero_boundary: bool = False
    volume_preserving: bool = False
    extend_outside: bool | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {self.kind!r}")
        if self.nx < 1 or self.ny < 1:
            raise ValueError("nx and ny must be positive")

    # ------------------------------------------------------------------ geometry
    @property
    def cells_per_square(self) -> int:
        return 4 if self.kind == "triangles" else 1

    @property
    def num_cells(self) -> int:
        return self.nx * self.ny * self.cells_per_square

    @property
    def outside(self) -> bool:
        return (not self.zero_boundary) if self.extend_outside is None else self.extend_outside

    def _grid(self) -> tuple[np.ndarray, np.ndarray]:
        return np.linspace(-1.0, 1.0, self.nx + 1), np.linspace(-1.0, 1.0, self.ny + 1)

    def cell_vertices(self) -> list[list[tuple[float, float]]]:
        """Vertices of every cell (inside the domain), in cell order."""
        vx, vy = self._grid()
        out = []
        for iy in range(self.ny):
            for ix in range(self.nx):
                ul, ur = (vx[ix], vy[iy]), (vx[ix + 1], vy[iy])
                ll, lr = (vx[ix], vy[iy + 1]), (vx[ix + 1], vy[iy + 1])
                if self.kind == "squares":
                    out.append([ul, ur, lr, ll])
                else:
                    c = ((vx[ix] + vx[ix + 1]) / 2, (vy[iy] + vy[iy + 1]) / 2)
                    out += [[c, ul, ur], [c, ur, lr], [c, lr, ll], [c, ll, ul]]
        return out

    def cell_centers(self) -> np.ndarray:
        """(num_cells, 2) centroids, used by the smoothness prior."""
        return np.array([np.mean(v, axis=0) for v in self.cell_vertices()])

    def cell_index(self, points: torch.Tensor) -> torch.Tensor:
        """Cell of each point; points (..., 2) in [-1, 1]^2 (outside allowed) -> (...) int64."""
        x, y = points[..., 0], points[..., 1]
        fx = (x + 1) * (self.nx / 2)
        fy = (y + 1) * (self.ny / 2)
        ix = fx.floor().clamp(0, self.nx - 1)
        iy = fy.floor().clamp(0, self.ny - 1)
        sq = (iy * self.nx + ix).long()
        if self.kind == "squares":
            return sq
        u = 2 * (fx - ix) - 1  # offsets from the square centre in half-widths
        w = 2 * (fy - iy) - 1
        horiz = u.abs() > w.abs()
        t = torch.where(horiz, torch.where(u > 0, 1, 3), torch.where(w > 0, 2, 0))
        return 4 * sq + t

    def cell_regions(self) -> tuple[np.ndarray, np.ndarray]:
        """Half-planes n.p <= h bounding each cell's (extended) region and the neighbour across each.

        Returns:
            edges (num_cells, 4, 3) holding (n_x, n_y, h) and neighbours (num_cells, 4) int64;
            unused slots are (0, 0, 1) with neighbour -1. Regions of boundary cells extend
            to infinity outside the domain, consistently with :meth:`cell_index`.
        """
        hx, hy = 1.0 / self.nx, 1.0 / self.ny
        edges = np.zeros((self.num_cells, 4, 3))
        edges[:, :, 2] = 1.0
        nbr = -np.ones((self.num_cells, 4), dtype=np.int64)
        for iy in range(self.ny):
            for ix in range(self.nx):
                cx, cy = -1 + (2 * ix + 1) * hx, -1 + (2 * iy + 1) * hy

                def sq(jx: int, jy: int) -> int:
                    return jy * self.nx + jx

                def add(
                    cell: int, slot: int, a: float, c: float, d: float, to: int, cx=cx, cy=cy
                ) -> None:
                    # a*u + c*w + d <= 0 in local half-width units -> n.p <= h.
                    edges[cell, slot] = (a / hx, c / hy, a * cx / hx + c * cy / hy - d)
                    nbr[cell, slot] = to

                left, right = ix > 0, ix < self.nx - 1
                up, down = iy > 0, iy < self.ny - 1
                if self.kind == "squares":
                    cell, s = sq(ix, iy), 0
                    for ok, a, c, to in (
                        (left, -1, 0, sq(ix - 1, iy)),
                        (right, 1, 0, sq(ix + 1, iy)),
                        (up, 0, -1, sq(ix, iy - 1)),
                        (down, 0, 1, sq(ix, iy + 1)),
                    ):
                        if ok:
                            add(cell, s, a, c, -1, to)
                            s += 1
                    continue
                base = 4 * sq(ix, iy)
                # Diagonal edges shared with the neighbouring triangles in this square.
                add(base + 0, 0, -1, 1, 0, base + 3)
                add(base + 0, 1, 1, 1, 0, base + 1)
                add(base + 1, 0, -1, 1, 0, base + 2)
                add(base + 1, 1, -1, -1, 0, base + 0)
                add(base + 2, 0, 1, -1, 0, base + 1)
                add(base + 2, 1, -1, -1, 0, base + 3)
                add(base + 3, 0, 1, 1, 0, base + 2)
                add(base + 3, 1, 1, -1, 0, base + 0)
                # Square side: either a neighbour square or the domain edge, beyond
                # which the region continues as a band between the grid lines.
                sides = (
                    (0, up, (0, -1), 4 * sq(ix, iy - 1) + 2 if up else -1, left, right),
                    (1, right, (1, 0), 4 * sq(ix + 1, iy) + 3 if right else -1, up, down),
                    (2, down, (0, 1), 4 * sq(ix, iy + 1) + 0 if down else -1, left, right),
                    (3, left, (-1, 0), 4 * sq(ix - 1, iy) + 1 if left else -1, up, down),
                )
                for t, inner, (a, c), to, lo_ok, hi_ok in sides:
                    cell = base + t
                    if inner:
                        add(cell, 2, a, c, -1, to)
                        continue
                    s = 2
                    if t in (0, 2):  # band in x: neighbours are the same triangle type
                        if lo_ok:
                            add(cell, s, -1, 0, -1, 4 * sq(ix - 1, iy) + t)
                            s += 1
                        if hi_ok:
                            add(cell, s, 1, 0, -1, 4 * sq(ix + 1, iy) + t)
                    else:
                        if lo_ok:
                            add(cell, s, 0, -1, -1, 4 * sq(ix, iy - 1) + t)
                            s += 1
                        if hi_ok:
                            add(cell, s, 0, 1, -1, 4 * sq(ix, iy + 1) + t)
        return edges, nbr

    # --------------------------------------------------------------- constraints
    def constraint_matrix(self) -> np.ndarray:
        """Rows L with L @ a = 0 for every admissible flat parameter vector a (float64)."""
        n = 6 * self.num_cells
        rows: list[np.ndarray] = []

        def agree(i: int, j: int, p: tuple[float, float]) -> None:
            # A_i [p;1] = A_j [p;1], one row per velocity component.
            ph = np.array([p[0], p[1], 1.0])
            for k in range(2):
                r = np.zeros(n)
                r[6 * i + 3 * k : 6 * i + 3 * k + 3] = ph
                r[6 * j + 3 * k : 6 * j + 3 * k + 3] = -ph
                rows.append(r)

        verts = self.cell_vertices()
        edges, nbr = self.cell_regions()
        # Continuity: cells sharing a side agree at its two end points (the field is
        # affine along the side, so this pins it everywhere on the side).
        for i in range(self.num_cells):
            for s in range(4):
                j = int(nbr[i, s])
                if j <= i:
                    continue
                shared = [p for p in verts[i] if any(np.allclose(p, q) for q in verts[j])]
                if len(shared) == 2:
                    for p in shared:
                        agree(i, j, p)
        if self.kind == "triangles" and self.outside:
            # Boundary triangles of neighbouring squares meet in one boundary vertex; their
            # extensions outside meet along the grid line through it, so they must also
            # agree at a second point on that line (libcpab's "valid outside").
            vx, vy = self._grid()
            for iy in range(self.ny - 1):
                for ix, t, dx in ((0, 3, -1.0), (self.nx - 1, 1, 1.0)):
                    a = 4 * (iy * self.nx + ix) + t
                    b = 4 * ((iy + 1) * self.nx + ix) + t
                    p = (vx[ix + (t == 1)], vy[iy + 1])
                    agree(a, b, p)
                    agree(a, b, (p[0] + dx, p[1]))
            for ix in range(self.nx - 1):
                for iy, t, dy in ((0, 0, -1.0), (self.ny - 1, 2, 1.0)):
                    a = 4 * (iy * self.nx + ix) + t
                    b = 4 * (iy * self.nx + ix + 1) + t
                    p = (vx[ix + 1], vy[iy + (t == 2)])
                    agree(a, b, p)
                    agree(a, b, (p[0], p[1] + dy))
        if self.zero_boundary:
            for c, vs in enumerate(verts):
                for p in vs:
                    ph = np.array([p[0], p[1], 1.0])
                    for k, coord in ((0, p[0]), (1, p[1])):
                        if abs(abs(coord) - 1.0) < 1e-12:  # normal component vanishes
                            r = np.zeros(n)
                            r[6 * c + 3 * k : 6 * c + 3 * k + 3] = ph
                            rows.append(r)
        if self.volume_preserving:
            for c in range(self.num_cells):
                r = np.zeros(n)
                r[6 * c + 0] = 1.0
                r[6 * c + 4] = 1.0
                rows.append(r)
        return np.array(rows) if rows else np.zeros((0, n))
