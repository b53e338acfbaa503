"""Equivariance losses (FOMM Sec. 3.3, reused by MRAA, TPSMM and CPAB): keypoints detected on a
randomly warped frame, mapped back through the warp, must match those of the original frame."""

from __future__ import annotations

import torch


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
