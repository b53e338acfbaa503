"""The user-facing CPAB transformer: velocity, transform, dense flow, sampling and fitting."""

from __future__ import annotations

import torch

from .basis import basis
from .fit import fit_adam, fit_fast
from .integrate import integrate_closed_form, integrate_numeric
from .prior import Prior, sample_theta
from .tessellation import Tessellation


def check_finite(name: str, value: torch.Tensor) -> None:
    """Raise ValueError naming the batch rows of ``value`` (B, ...) that hold NaN or inf.

    A non-finite row has no meaningful transform; refusing it keeps the other rows' results
    from silently depending on it.
    """
    bad = ~torch.isfinite(value.detach().reshape(value.shape[0], -1)).all(-1)
    if bool(bad.any()):
        rows = bad.nonzero().squeeze(1).tolist()
        raise ValueError(f"CPAB: {name} has non-finite values (NaN or inf) in batch rows {rows}")


class CPAB:
    """CPAB transformations on a tessellation of [-1, 1]^2.

    Conventions: points are (B, N, 2) with x (column) first and y downwards, in [-1, 1]^2
    exactly as ``torch.nn.functional.grid_sample`` reads its grid; theta is (B, d), one
    transformation per batch entry. ``T_theta(x)`` is the time-1 flow of the continuous
    piecewise-affine velocity field ``v_theta``; ``T_{-theta}`` is its inverse.

    Args:
        tess: the tessellation (cells and constraints).
        prior: default prior for :meth:`sample` and the ``fast`` fit.
    """

    def __init__(self, tess: Tessellation, prior: Prior | None = None) -> None:
        self.tess = tess
        self.prior = prior or Prior()
        self._basis = basis(tess)

    @property
    def dim(self) -> int:
        """d, the number of parameters of theta."""
        return self._basis.shape[1]

    @property
    def basis(self) -> torch.Tensor:
        """(6 C, d) orthonormal float64 basis (see :func:`basis`)."""
        return self._basis

    def identity(self, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(n, d) zeros: the identity transformation (gradients are finite there)."""
        return torch.zeros(n, self.dim, dtype=dtype)

    def sample(
        self, n: int, prior: Prior | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(n, d) float64 theta drawn from the smoothness prior."""
        return sample_theta(self.tess, n, prior or self.prior, generator)

    def cell_matrices(self, theta: torch.Tensor) -> torch.Tensor:
        """(B, d) -> (B, C, 2, 3) per-cell affine matrices, float64, differentiable."""
        flat = theta.to(torch.float64) @ self._basis.to(theta.device).T
        return flat.reshape(theta.shape[0], self.tess.num_cells, 2, 3)

    def velocity(self, points: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """v_theta(points): (B, N, 2), (B, d) -> (B, N, 2) in ``points.dtype``."""
        a = self.cell_matrices(theta)
        c = self.tess.cell_index(points.detach())
        ab = a.gather(1, c[..., None, None].expand(-1, -1, 2, 3))
        p = points.to(torch.float64)
        v = torch.einsum("bnij,bnj->bni", ab[..., :2], p) + ab[..., 2]
        return v.to(points.dtype)

    def velocity_jacobian(self, points: torch.Tensor) -> torch.Tensor:
        """d v_theta(points) / d theta, exact and independent of theta: (S, N, 2) -> (S, 2N, d)."""
        c = self.tess.cell_index(points.detach())
        rows = self._basis.reshape(self.tess.num_cells, 2, 3, self.dim)[c]  # (S, N, 2, 3, d)
        ph = torch.cat([points.to(torch.float64), torch.ones_like(points[..., :1])], -1)
        jac = torch.einsum("snkjd,snj->snkd", rows, ph.to(torch.float64))
        return jac.reshape(points.shape[0], -1, self.dim)

    def transform(
        self,
        points: torch.Tensor,
        theta: torch.Tensor,
        method: str = "closed_form",
        steps: int = 50,
    ) -> torch.Tensor:
        """T_theta(points), differentiable in points and theta.

        Args:
            points: (B, N, 2) in [-1, 1]^2 (points outside follow the extended field).
            theta: (B, d).
            method: ``"closed_form"`` (exact, float64 inside) or ``"numeric"`` (the
                release's ``steps`` fixed steps of per-cell exp(A / steps), in
                ``points.dtype``).

        Returns:
            (B, N, 2) in ``points.dtype``.
        """
        if points.dim() != 3 or theta.dim() != 2 or points.shape[0] != theta.shape[0]:
            raise ValueError(
                f"CPAB.transform: points (B, N, 2) and theta (B, d) expected, got "
                f"{tuple(points.shape)} and {tuple(theta.shape)}"
            )
        if points.numel() == 0:  # empty batch or no points: nothing to move
            return points.clone()
        check_finite("theta", theta)
        check_finite("points", points)
        if method == "closed_form":
            return integrate_closed_form(points, self.cell_matrices(theta), self.tess)
        if method == "numeric":
            a = self.cell_matrices(theta).to(points.dtype)
            return integrate_numeric(points, a, self.tess, steps)
        raise ValueError(f"unknown method {method!r}")

    def flow(
        self,
        theta: torch.Tensor,
        height: int,
        width: int,
        method: str = "closed_form",
        align_corners: bool = True,
        inverse: bool = False,
        steps: int = 50,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Dense sampling grid for ``grid_sample`` (backward warp).

        Output pixel p holds ``T_theta(p)`` (``T_{-theta}(p)`` if ``inverse``): the source
        location it samples. This is the release's convention, where theta is fitted so
        that T_theta(kp_driving) = kp_source. Pixel centres are placed as
        ``grid_sample(..., align_corners=align_corners)`` expects; pass the same flag there.

        Returns:
            (B, height, width, 2) grid, x first.
        """
        if align_corners:
            xs = torch.linspace(-1, 1, width, dtype=dtype)
            ys = torch.linspace(-1, 1, height, dtype=dtype)
        else:
            xs = (torch.arange(width, dtype=dtype) * 2 + 1) / width - 1
            ys = (torch.arange(height, dtype=dtype) * 2 + 1) / height - 1
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx, gy], -1).reshape(1, -1, 2).expand(theta.shape[0], -1, -1)
        th = -theta if inverse else theta
        out = self.transform(grid.contiguous(), th, method=method, steps=steps)
        return out.reshape(theta.shape[0], height, width, 2)

    def fit(
        self,
        kp_driving: torch.Tensor,
        kp_source: torch.Tensor,
        method: str = "fast",
        **kwargs,
    ) -> torch.Tensor:
        """theta (S, d) with T_theta(kp_driving) ~ kp_source; keypoints (S, N, 2).

        ``method="fast"``: :func:`fit_fast` (regularised LSQ + damped Gauss-Newton, float64,
        differentiable w.r.t. the keypoints). ``method="adam"``: :func:`fit_adam` (the
        release: Adam lr 1e-2 from zero, detached keypoints; pass ``iterations``).
        """
        if kp_driving.shape != kp_source.shape or kp_driving.dim() != 3:
            raise ValueError(
                f"CPAB.fit: keypoints (S, N, 2) of equal shape expected, got "
                f"{tuple(kp_driving.shape)} and {tuple(kp_source.shape)}"
            )
        if kp_driving.shape[0] == 0:
            return torch.zeros(0, self.dim, dtype=torch.float64, device=kp_driving.device)
        check_finite("kp_driving", kp_driving)
        check_finite("kp_source", kp_source)
        if method == "fast":
            return fit_fast(self, kp_driving, kp_source, **kwargs)
        if method == "adam":
            return fit_adam(self, kp_driving, kp_source, **kwargs)
        raise ValueError(f"unknown fit method {method!r}")
