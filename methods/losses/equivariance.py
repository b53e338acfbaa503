"""Equivariance losses (FOMM Sec. 3.3, reused by MRAA, TPSMM and CPAB): keypoints detected on a
randomly warped frame, mapped back through the warp, must match those of the original frame."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from methods.losses.random_tps import RandomTPS
from methods.motion.pca import align_axes


def equivariance_value_loss(
    kp_driving: torch.Tensor, warped_transformed_kp: torch.Tensor
) -> torch.Tensor:
    """Mean |p_d - T(p_T)|: keypoints of the warped frame, mapped back, match the originals."""
    return (kp_driving - warped_transformed_kp).abs().mean()


def equivariance_jacobian_loss(
    jacobian_driving: torch.Tensor, jacobian_transformed: torch.Tensor
) -> torch.Tensor:
    """Mean |I - J_d^{-1} (J_T J_t)|, ``jacobian_transformed`` being the composed J_T J_t."""
    product = torch.inverse(jacobian_driving) @ jacobian_transformed
    eye = torch.eye(2, dtype=product.dtype, device=product.device)
    return (eye - product).abs().mean()


def equivariance_affine_loss(
    affine_driving: torch.Tensor, affine_transformed: torch.Tensor, revert_axis_swap: bool
) -> torch.Tensor:
    """Mean |I - A_d^{-1} (J_T A_T)| (``affine_transformed`` is the composed J_T A_T).

    With ``revert_axis_swap`` the product is first multiplied by the sign of its (0, 0) entry,
    so an SVD sign flip of a region's axes is not penalised (MRAA's equivariance affine loss).
    """
    product = torch.inverse(affine_driving) @ affine_transformed
    if revert_axis_swap:
        product = align_axes(product)
    eye = torch.eye(2, dtype=product.dtype, device=product.device)
    return (eye - product).abs().mean()


def equivariance_terms(
    detector: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    driving: torch.Tensor,
    motion_driving: dict[str, torch.Tensor],
    transform_params: dict[str, Any],
    points_key: str,
    matrix_key: str | None = None,
    matrix_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = equivariance_jacobian_loss,
    generator: torch.Generator | None = None,
    align_corners: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, dict[str, torch.Tensor]]:
    """FOMM's and MRAA's equivariance step: warp ``driving`` by a random TPS, detect again, and
    compare through the warp (FOMM: keypoints ``value`` + ``jacobian``; MRAA: region ``shift``
    + ``affine``).

    Returns the unweighted points loss, the matrix loss (``None`` without ``matrix_key``), the
    warped frame and the detector's output on it.
    """
    transform = RandomTPS(
        driving.shape[0],
        **transform_params,
        generator=generator,
        device=driving.device,
        dtype=driving.dtype,
        align_corners=align_corners,
    )
    transformed_frame = transform.transform_frame(driving)
    transformed = detector(transformed_frame)
    points = transformed[points_key]
    points_loss = equivariance_value_loss(motion_driving[points_key], transform.warp_coordinates(points))
    matrix = None
    if matrix_key is not None:
        composed = transform.jacobian(points) @ transformed[matrix_key]
        matrix = matrix_loss(motion_driving[matrix_key], composed)
    return points_loss, matrix, transformed_frame, transformed
