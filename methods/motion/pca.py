"""PCA regions of MRAA (Siarohin et al., CVPR 2021, Sec. 3.2) and their sparse motions.

A region is a softmax heatmap ``H`` over the coordinate grid. Its shift is the heatmap mean
``mu = sum_z H(z) z`` and its affine is a square root of the heatmap covariance
``Sigma = sum_z H(z) (z - mu)(z - mu)^T``: with the SVD ``Sigma = U S V^T`` the affine is
``A = U S^{1/2}``, so ``A A^T = Sigma`` (PCA: the axes of the region and their spreads).

The SVD of a symmetric matrix fixes each singular vector only up to its sign, and swaps the
axes when the two singular values cross; ``revert_axis_swap`` undoes the resulting sign flips
of the source-to-driving affine, as the reference does.

Region dicts hold ``shift`` (B, K, 2), ``covar`` (B, K, 2, 2) and ``affine`` (B, K, 2, 2), all in
``grid_sample`` coordinates (x first, [-1, 1]). Sparse motions are backward warps
(driving -> source).
"""

from __future__ import annotations

import torch

from methods.blocks import heatmap_mean, make_coordinate_grid

Regions = dict[str, torch.Tensor]


def heatmap_covariance(heatmap: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) heatmaps and their (B, K, 2) means -> (B, K, 2, 2) covariances."""
    grid = make_coordinate_grid(heatmap.shape[2:], heatmap.dtype, heatmap.device)
    centred = grid - mean[:, :, None, None, :]  # (B, K, H, W, 2)
    outer = centred.unsqueeze(-1) * centred.unsqueeze(-2)  # (B, K, H, W, 2, 2)
    # A weighted sum over the pixel axes (the released code's order; see blocks.heatmap_mean).
    return (outer * heatmap[..., None, None]).sum(dim=(2, 3))


def svd_2x2(covar: torch.Tensor, fast: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2, 2) -> (U, S) of the SVD.

    ``fast=False`` runs ``torch.svd`` on the CPU whatever the input device, as the reference
    does (its singular-vector signs are what the released checkpoints were trained with).
    ``fast=True`` runs a batched SVD on the input's device; the reference used the CUDA package
    ``torch_batch_svd`` here, which the reference itself warns may pick other signs.
    """
    if fast:
        u, s, _ = torch.linalg.svd(covar)
        return u, s
    u, s, _ = torch.svd(covar.cpu())
    return u.to(covar.device), s.to(covar.device)


def covariance_to_affine(covar: torch.Tensor, fast_svd: bool = False) -> torch.Tensor:
    """(..., 2, 2) covariances -> affines ``U S^{1/2}`` with ``A A^T = covar``."""
    shape = covar.shape
    u, s = svd_2x2(covar.reshape(-1, 2, 2), fast=fast_svd)
    return (u * s.sqrt().unsqueeze(-2)).reshape(shape)


def heatmap_to_regions(heatmap: torch.Tensor, pca_based: bool = True, fast_svd: bool = False) -> Regions:
    """Region parameters of (B, K, H, W) normalised heatmaps: ``shift`` and, when ``pca_based``,
    ``covar`` and ``affine``."""
    mean = heatmap_mean(heatmap)
    regions: Regions = {"shift": mean}
    if pca_based:
        covar = heatmap_covariance(heatmap, mean)
        regions["covar"] = covar
        regions["affine"] = covariance_to_affine(covar, fast_svd)
    return regions


def align_axes(matrix: torch.Tensor) -> torch.Tensor:
    """Multiply each (..., 2, 2) matrix by the sign of its (0, 0) entry (``revert_axis_swap``).

    Applied to ``A_s A_d^{-1}``: an SVD sign flip between source and driving turns the relative
    affine into (nearly) a reflection or a half-turn with negative (0, 0) entry; the sign undoes it.
    """
    return matrix * torch.sign(matrix[..., 0:1, 0:1])


def region_gaussian(
    shift: torch.Tensor, covar: torch.Tensor | float, spatial_size: tuple[int, int] | torch.Size
) -> torch.Tensor:
    """Gaussian-like heatmap of each region: (..., K, 2) shifts -> (..., K, H, W).

    ``covar`` is a float (isotropic variance, FOMM's heatmaps) or (..., K, 2, 2) covariances
    (MRAA's ``use_covar_heatmap``): ``exp(-0.5 (z - mu)^T Sigma^{-1} (z - mu))``, peak 1.
    """
    grid = make_coordinate_grid(spatial_size, shift.dtype, shift.device)
    diff = grid - shift[..., None, None, :]  # (..., K, H, W, 2)
    if isinstance(covar, (int, float)):
        return torch.exp(-0.5 * diff.pow(2).sum(-1) / covar)
    inverse = torch.inverse(covar)[..., None, None, :, :]  # (..., K, 1, 1, 2, 2)
    mahalanobis = (diff.unsqueeze(-2) @ inverse @ diff.unsqueeze(-1))[..., 0, 0]
    return torch.exp(-0.5 * mahalanobis)


def region_motions(
    source: Regions,
    driving: Regions,
    spatial_size: tuple[int, int],
    bg_params: torch.Tensor | None = None,
    revert_axis_swap: bool = False,
) -> torch.Tensor:
    """(B, K+1, H, W, 2) sampling grids: index 0 is the background motion, then one per region.

    Near region k a driving coordinate z maps to ``mu_s + A_s A_d^{-1} (z - mu_d)`` (only the
    shift when the regions carry no ``affine``). The background grid is ``bg_params`` (B, 3, 3)
    applied to homogeneous coordinates, or the identity when ``bg_params`` is None.
    """
    shift_s, shift_d = source["shift"], driving["shift"]
    b = shift_d.shape[0]
    identity = make_coordinate_grid(spatial_size, shift_s.dtype, shift_s.device)  # (H, W, 2)
    rel = identity[None, None] - shift_d[:, :, None, None, :]  # (B, K, H, W, 2)
    if "affine" in driving:
        affine = source["affine"] @ torch.inverse(driving["affine"])  # (B, K, 2, 2)
        if revert_axis_swap:
            affine = align_axes(affine)
        rel = (affine[:, :, None, None] @ rel.unsqueeze(-1)).squeeze(-1)
    per_region = rel + shift_s[:, :, None, None, :]
    if bg_params is None:
        background = identity[None, None].expand(b, 1, *identity.shape)
    else:
        homogeneous = torch.cat([identity, torch.ones_like(identity[..., :1])], dim=-1)  # (H, W, 3)
        mapped = (bg_params[:, None, None] @ homogeneous.unsqueeze(-1)).squeeze(-1)
        background = (mapped[..., :2] / mapped[..., 2:3]).unsqueeze(1)
    return torch.cat([background, per_region], dim=1)
