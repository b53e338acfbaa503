"""Random thin-plate-spline warps for FOMM's equivariance losses (paper Sec. 3.3).

A warp is ``T(z) = A z + t + sum_i w_i U(|z - c_i|_1)`` with ``U(r) = r^2 log r``, control points
``c_i`` on a ``points_tps x points_tps`` grid in [-1, 1]^2, and the same scalar TPS offset added
to both coordinates (as in the FOMM reference). Randomness comes from ``generator`` when one is
given, otherwise from the global torch RNG (so ``torch.manual_seed`` makes it reproducible).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from methods.blocks import make_coordinate_grid


class RandomTPS:
    """A batch of random warps; coordinates are (B, N, 2) in [-1, 1], x first."""

    def __init__(
        self,
        batch_size: int,
        sigma_affine: float,
        sigma_tps: float | None = None,
        points_tps: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        align_corners: bool = True,
    ) -> None:
        self.batch_size = batch_size
        self.align_corners = align_corners
        # sampled on the generator's device, then moved, so a CPU generator also drives GPU runs
        gen_device = generator.device if generator is not None else "cpu"

        def normal(*shape: int, std: float) -> torch.Tensor:
            noise = torch.randn(*shape, generator=generator, device=gen_device, dtype=dtype)
            return (noise * std).to(device)

        self.theta = normal(batch_size, 2, 3, std=sigma_affine) + torch.eye(
            2, 3, dtype=dtype, device=device
        )
        self.tps = sigma_tps is not None and points_tps is not None
        if self.tps:
            assert points_tps is not None and sigma_tps is not None
            self.control_points = make_coordinate_grid(
                (points_tps, points_tps), dtype, device
            ).reshape(-1, 2)
            self.control_params = normal(batch_size, 1, points_tps**2, std=sigma_tps)

    def warp_coordinates(self, coordinates: torch.Tensor) -> torch.Tensor:
        """Apply the warps to (B or 1, N, 2) coordinates -> (B, N, 2)."""
        theta = self.theta.to(coordinates)
        out = coordinates @ theta[:, :, :2].transpose(1, 2) + theta[:, None, :, 2]
        if self.tps:
            dist = (coordinates[:, :, None, :] - self.control_points.to(coordinates)).abs().sum(-1)
            radial = dist.pow(2) * torch.log(dist + 1e-6)  # (B, N, P)
            out = out + (radial * self.control_params.to(coordinates)).sum(-1, keepdim=True)
        return out

    def transform_frame(self, frame: torch.Tensor) -> torch.Tensor:
        """Resample (B, C, H, W) so that output pixel z shows input pixel ``warp_coordinates(z)``."""
        h, w = frame.shape[2:]
        grid = make_coordinate_grid((h, w), frame.dtype, frame.device).reshape(1, h * w, 2)
        grid = self.warp_coordinates(grid).reshape(self.batch_size, h, w, 2)
        return F.grid_sample(
            frame, grid, padding_mode="reflection", align_corners=self.align_corners
        )

    def jacobian(self, coordinates: torch.Tensor) -> torch.Tensor:
        """(B, N, 2, 2) Jacobian d warp / d z at ``coordinates``, differentiable w.r.t. them."""
        with torch.enable_grad():
            coords = (
                coordinates
                if coordinates.requires_grad
                else coordinates.detach().requires_grad_(True)
            )
            warped = self.warp_coordinates(coords)
            # warped[b, n] depends only on coords[b, n], so gradients of sums give per-point rows
            grad_x = torch.autograd.grad(warped[..., 0].sum(), coords, create_graph=True)[0]
            grad_y = torch.autograd.grad(warped[..., 1].sum(), coords, create_graph=True)[0]
        return torch.stack([grad_x, grad_y], dim=-2)
