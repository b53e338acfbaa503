"""scikit-image 0.14's ``resize``, reproduced: the resize the papers' frames were made with.

video-preprocessing (which made the TaiChiHD, VoxCeleb and TED frames of every published table)
pins scikit-image 0.14.2 and calls ``img_as_ubyte(resize(crop, shape, anti_aliasing=True))``;
pose-evaluation (0.14.0) calls ``resize(frame, (96, 96))`` before OpenFace. That version differs
from today's ``resize`` in three ways that change pixels, reproduced here from its documented
arithmetic (no old package is installed):

- the default ``mode`` is ``'constant'`` with ``cval=0``: samples outside the image are black,
  so the border rows and columns of a downscaled frame are darker (today: ``'reflect'``);
- the anti-aliasing Gaussian runs on the *uint8* image, through ``scipy.ndimage.gaussian_filter``
  whose output keeps the input's dtype: each axis' pass is truncated to an integer before the next
  (today the image is converted to float first);
- ``anti_aliasing`` defaults to False (0.14 only warned that 0.15 would change it).

Then, as 0.14's ``warp`` with ``order=1``: ``img_as_float`` (``x * (1 / 255)``), bilinear
sampling of output pixel ``(r, c)`` at ``factor * (r + 0.5) - 0.5`` with out-of-image neighbours
equal to ``cval``, and the result clipped to the input's range (keeping exact ``cval`` pixels
when ``cval`` lies outside it). ``img_as_ubyte`` rounds ``x * 255`` to the nearest integer.
The sampling positions come, as in 0.14, from an ``AffineTransform`` estimated from three
corner correspondences by the normalised direct linear transform (Hartley: centre, scale to mean
distance sqrt(2), SVD) and applied as a homography per pixel: that estimate moves positions by
~1e-13 px, which decides ``rint`` at exact .5 ties, so it is reproduced rather than replaced by
the exact positions (docs/datasets.md, "Resize", gives the comparison).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

#: skimage 0.14's ``img_as_float`` multiplies by the reciprocal (not a division: 1-ulp apart).
_UINT8_TO_FLOAT = 1.0 / 255


def _normalise_points(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hartley normalisation as 0.14 did it: centroid to 0, mean distance sqrt(2)."""
    centroid = np.mean(points, axis=0)
    rms = math.sqrt(np.sum((points - centroid) ** 2) / points.shape[0])
    scale = math.sqrt(2) / rms
    matrix = np.array([[scale, 0, -scale * centroid[0]], [0, scale, -scale * centroid[1]], [0, 0, 1]])
    homogeneous = matrix @ np.vstack([points.T, np.ones(points.shape[0])])
    return matrix, (homogeneous[:2] / homogeneous[2]).T


def resize_matrix(in_shape: tuple[int, int], out_shape: tuple[int, int]) -> np.ndarray:
    """The 3x3 map from output (col, row) to input (col, row) that 0.14's resize estimated."""
    rows, cols = out_shape
    factor_r, factor_c = in_shape[0] / rows, in_shape[1] / cols
    if rows == 1 and cols == 1:
        return np.array([[1.0, 0, in_shape[1] / 2.0 - 0.5], [0, 1.0, in_shape[0] / 2.0 - 0.5], [0, 0, 1]])
    src = np.array([[1, 1], [1, rows], [cols, rows]], dtype=float) - 1
    dst = np.column_stack([factor_c * (src[:, 0] + 0.5) - 0.5, factor_r * (src[:, 1] + 0.5) - 0.5])
    src_matrix, src_n = _normalise_points(src)
    dst_matrix, dst_n = _normalise_points(dst)
    # The affine rows of the DLT system (the projective columns 6, 7 dropped), solved by SVD.
    a = np.zeros((6, 7))
    a[:3, 0], a[:3, 1], a[:3, 2], a[:3, 6] = src_n[:, 0], src_n[:, 1], 1, dst_n[:, 0]
    a[3:, 3], a[3:, 4], a[3:, 5], a[3:, 6] = src_n[:, 0], src_n[:, 1], 1, dst_n[:, 1]
    _, _, v = np.linalg.svd(a)
    h = np.zeros((3, 3))
    h.flat[[0, 1, 2, 3, 4, 5, 8]] = -v[-1, :-1] / v[-1, -1]
    h[2, 2] = 1
    return np.linalg.inv(dst_matrix) @ (h @ src_matrix)


def _positions(matrix: np.ndarray, out_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Input (row, col) of every output pixel, as 0.14's per-pixel homography computed it."""
    y, x = np.meshgrid(np.arange(out_shape[0], dtype=float), np.arange(out_shape[1], dtype=float),
                       indexing="ij")
    h = matrix.ravel()
    xx = h[0] * x + h[1] * y + h[2]
    yy = h[3] * x + h[4] * y + h[5]
    zz = h[6] * x + h[7] * y + h[8]
    return yy / zz, xx / zz


def _pixels(image: np.ndarray, r: np.ndarray, c: np.ndarray, cval: float) -> np.ndarray:
    """``image[r, c]`` (channels kept) with ``cval`` where (r, c) is outside the image."""
    inside = (r >= 0) & (r < image.shape[0]) & (c >= 0) & (c < image.shape[1])
    taken = image[np.clip(r, 0, image.shape[0] - 1), np.clip(c, 0, image.shape[1] - 1)]
    if image.ndim == 3:
        inside = inside[..., None]
    return np.where(inside, taken, cval)


def skimage014_resize(
    image: np.ndarray, output_shape: tuple[int, int], anti_aliasing: bool = False, cval: float = 0.0
) -> np.ndarray:
    """``skimage.transform.resize(image, output_shape, anti_aliasing=...)`` as scikit-image 0.14
    computed it for a uint8 ``(H, W)`` or ``(H, W, C)`` image with its defaults (order 1, mode
    ``'constant'``, clip, no preserve_range): float64 in [0, 1]."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 (H, W[, C]) image, got {image.dtype} {image.shape}")
    out_h, out_w = (int(s) for s in output_shape)
    if out_h <= 0 or out_w <= 0 or min(image.shape[:2]) == 0:
        raise ValueError(f"cannot resize an image of shape {image.shape} to {output_shape}")
    in_h, in_w = image.shape[:2]
    if anti_aliasing:
        factors = np.array([in_h / out_h, in_w / out_w] + [1.0] * (image.ndim - 2))
        sigma = np.maximum(0, (factors - 1) / 2)
        # On the uint8 array: scipy writes each axis' pass into a uint8 output (truncating).
        image = ndi.gaussian_filter(image, sigma, cval=cval, mode="constant")
    source = image * _UINT8_TO_FLOAT
    r, c = _positions(resize_matrix((in_h, in_w), (out_h, out_w)), (out_h, out_w))
    r0, c0 = np.floor(r), np.floor(c)
    # 0.14 takes ceil for the upper neighbour: equal to floor at integer positions (weight 0).
    r1, c1 = np.ceil(r).astype(np.int64), np.ceil(c).astype(np.int64)
    dr, dc = r - r0, c - c0
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    if image.ndim == 3:
        dr, dc = dr[..., None], dc[..., None]
    top = (1 - dc) * _pixels(source, r0, c0, cval) + dc * _pixels(source, r0, c1, cval)
    bottom = (1 - dc) * _pixels(source, r1, c0, cval) + dc * _pixels(source, r1, c1, cval)
    out = (1 - dr) * top + dr * bottom
    lo, hi = source.min(), source.max()
    keep_cval = not (lo <= cval <= hi)
    mask = out == cval if keep_cval else None
    np.clip(out, lo, hi, out=out)
    if mask is not None:
        out[mask] = cval
    return out


def float_to_ubyte(image: np.ndarray) -> np.ndarray:
    """scikit-image's ``img_as_ubyte`` for a float image in [0, 1]: ``rint(x * 255)``."""
    if image.min() < 0 or image.max() > 1:
        raise ValueError("a float image must lie in [0, 1]")
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def skimage014_resize_ubyte(image: np.ndarray, output_shape: tuple[int, int]) -> np.ndarray:
    """``img_as_ubyte(resize(image, output_shape, anti_aliasing=True))`` under scikit-image 0.14:
    video-preprocessing's crop resize."""
    return float_to_ubyte(skimage014_resize(image, output_shape, anti_aliasing=True))
