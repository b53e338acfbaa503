"""Thin-plate-spline transformations in closed form (TPSMM Eq. 2; random warps for equivariance).

A TPS maps a point ``p`` (x first, in [-1, 1]^2) to

    T(p) = A [p; 1] + sum_i w_i U(|p - c_i|^2),   U(s) = s log s,

with ``A`` a 2x3 affine part, control points ``c_i`` and 2-vector weights ``w_i``. ``s log s`` of
the squared distance is ``2 r^2 log r``, the TPS radial basis up to a factor that the fitted
weights absorb; the small ``eps`` inside the log keeps ``U(0) = 0`` finite and differentiable.

Everything is batched over arbitrary leading dimensions: TPSMM fits ``B x K`` splines (K TPS
transforms of 5 keypoints each) in one batched inverse. A :class:`TPS` is just parameters;
any method that produces sampling grids by other means (CPAB) hands the dense-motion network
grids of the same shape as :func:`TPS.grid` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.blocks import make_coordinate_grid

#: Inside the log of the radial basis; the reference TPSMM value.
EPS = 1e-9


def radial_basis(sq_dist: torch.Tensor) -> torch.Tensor:
    """``U(s) = s log(s + eps)`` of squared distances ``s`` (0 at ``s = 0``)."""
    return sq_dist * torch.log(sq_dist + EPS)


def _full_precision(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """``tensors`` in float32 at least (float64 stays float64).

    Spline weights come out of an ill-conditioned inverse and exceed float16's range, so the
    splines are fitted and applied in float32 under any autocast (a no-op in float32/float64).
    """
    return [t if t.dtype in (torch.float32, torch.float64) else t.float() for t in tensors]


def _pairwise_sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., N, 2), (..., M, 2) -> (..., N, M) squared euclidean distances."""
    return (a[..., :, None, :] - b[..., None, :, :]).pow(2).sum(-1)


@dataclass
class TPS:
    """Parameters of a batch of thin-plate splines; leading dimensions ``...`` are the batch.

    ``affine``: (..., 2, 3); ``control_points``: (..., N, 2); ``weights``: (..., N, 2).
    """

    affine: torch.Tensor
    control_points: torch.Tensor
    weights: torch.Tensor

    def warp_points(self, points: torch.Tensor) -> torch.Tensor:
        """Map (..., P, 2) points -> (..., P, 2); ``points`` broadcasts against the batch."""
        with torch.autocast(points.device.type, enabled=False):
            points, affine, control, weights = _full_precision(
                points, self.affine, self.control_points, self.weights
            )
            linear = points @ affine[..., :, :2].transpose(-1, -2) + affine[..., None, :, 2]
            basis = radial_basis(_pairwise_sq_dist(points, control))  # (..., P, N)
            return linear + basis @ weights

    def grid(self, spatial_size: tuple[int, int] | torch.Size) -> torch.Tensor:
        """Sampling grid (..., H, W, 2): pixel ``z`` of the output reads the input at ``T(z)``.

        Pixel coordinates follow :func:`methods.blocks.make_coordinate_grid` (first and last
        pixel centres at -1 and 1, the ``align_corners=True`` convention).
        """
        h, w = int(spatial_size[0]), int(spatial_size[1])
        coords = make_coordinate_grid((h, w), self.affine.dtype, self.affine.device).view(h * w, 2)
        warped = self.warp_points(coords)
        return warped.view(*warped.shape[:-2], h, w, 2)


def fit_tps(
    control_points: torch.Tensor, targets: torch.Tensor, regularization: float = 0.0
) -> TPS:
    """The TPS sending ``control_points`` to ``targets`` (both (..., N, 2)), in closed form.

    Solves the standard (N+3)x(N+3) system ``[[K, P], [P^T, 0]] [W; A^T] = [Y; 0]`` with
    ``K_ij = U(|c_i - c_j|^2)`` and ``P = [c, 1]``; differentiable in both arguments. With
    ``regularization = 0`` the spline interpolates exactly (needs N >= 3 points not all on one
    line). TPSMM adds ``0.01 * I`` to the *whole* system matrix, smoothing the fit slightly (the
    released checkpoints were trained with that), so its splines pass within ~1e-2 of the targets.
    """
    with torch.autocast(control_points.device.type, enabled=False):
        return _fit_tps(*_full_precision(control_points, targets), regularization)


def _fit_tps(control_points: torch.Tensor, targets: torch.Tensor, regularization: float) -> TPS:
    n = control_points.shape[-2]
    batch = control_points.shape[:-2]
    dtype, device = control_points.dtype, control_points.device
    # The system is built and solved with the rounding of the released TPSMM code (squared
    # *norms* of the differences, an explicit inverse), not the sum of squares and
    # ``linalg.solve`` used elsewhere: mathematically the same, equally accurate (both ~1e-5
    # from float64 at 64x64), but these small systems are ill-conditioned enough that a
    # different rounding moved released-checkpoint outputs by up to 2e-4 in float32. This way
    # they agree bit for bit (docs/tpsmm.md).
    differences = control_points[..., :, None, :] - control_points[..., None, :, :]
    kernel = radial_basis(torch.linalg.vector_norm(differences, dim=-1) ** 2)
    p = torch.cat([control_points, torch.ones(*batch, n, 1, dtype=dtype, device=device)], dim=-1)
    top = torch.cat([kernel, p], dim=-1)
    bottom = torch.cat([p.transpose(-1, -2), torch.zeros(*batch, 3, 3, dtype=dtype, device=device)], dim=-1)
    system = torch.cat([top, bottom], dim=-2)
    if regularization:
        system = system + regularization * torch.eye(n + 3, dtype=dtype, device=device)
    rhs = torch.cat([targets, torch.zeros(*batch, 3, 2, dtype=dtype, device=device)], dim=-2)
    solution = torch.linalg.inv(system) @ rhs  # (..., N + 3, 2); see the kernel's comment
    return TPS(
        affine=solution[..., n:, :].transpose(-1, -2),
        control_points=control_points,
        weights=solution[..., :n, :],
    )


def random_tps(
    batch_size: int,
    sigma_affine: float,
    sigma_tps: float,
    points_tps: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> TPS:
    """TPSMM's random warps for the equivariance loss.

    Affine part ``I + N(0, sigma_affine)``; control points on a ``points_tps x points_tps`` grid;
    one ``N(0, sigma_tps)`` weight per control point added to both coordinates, as in TPSMM's
    reference (FOMM's :class:`methods.losses.random_tps.RandomTPS` differs: L1 distances).
    Draws from ``generator`` (on its device, then moved) or the global RNG.
    """
    gen_device = generator.device if generator is not None else "cpu"
    noise = torch.randn(batch_size, 2, 3, generator=generator, device=gen_device, dtype=dtype)
    params = torch.randn(batch_size, points_tps**2, 1, generator=generator, device=gen_device, dtype=dtype)
    grid = make_coordinate_grid((points_tps, points_tps), dtype, device).view(1, -1, 2)
    return TPS(
        affine=(noise * sigma_affine).to(device) + torch.eye(2, 3, dtype=dtype, device=device),
        control_points=grid.expand(batch_size, -1, -1),
        weights=(params * sigma_tps).to(device).expand(-1, -1, 2),
    )
