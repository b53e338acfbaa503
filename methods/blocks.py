"""Building blocks shared by the keypoint-based methods (FOMM and its descendants).

Attribute names (``conv``, ``norm``, ``down_blocks``, ``encoder`` ...) follow the released FOMM
checkpoints so that their state_dicts load with ``strict=True``. The reference used synchronised
batch norm; ``nn.BatchNorm2d`` stores the same keys (weight, bias, running_mean, running_var,
num_batches_tracked) and is equivalent on a single device. TPSMM's blocks are the same with
``norm_layer=nn.InstanceNorm2d`` (affine, no running statistics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def make_coordinate_grid(
    spatial_size: tuple[int, int] | torch.Size,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(H, W, 2) grid of pixel-centre coordinates in [-1, 1], x first (``grid_sample`` order).

    The first and last pixel centres sit exactly on -1 and 1, which is the
    ``align_corners=True`` convention of ``grid_sample``.
    """
    h, w = int(spatial_size[0]), int(spatial_size[1])

    def axis(n: int) -> torch.Tensor:
        # 2 * (i / (n - 1)) - 1 rather than linspace: the rounding of the released FOMM, MRAA
        # and TPSMM code, so float32 outputs on their checkpoints agree bit for bit here.
        if n == 1:
            return torch.zeros(1, dtype=dtype, device=device)
        return 2 * (torch.arange(n, device=device).to(dtype) / (n - 1)) - 1

    xs, ys = axis(w), axis(h)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def heatmap_mean(heatmap: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) normalised heatmaps -> (B, K, 2) expected coordinates (x first): FOMM's
    keypoints, MRAA's region shifts.

    A weighted sum over the pixel axes, not a matrix product: the released FOMM/MRAA code's
    summation order. Downstream (MRAA's SVD square root and ``A_d^{-1}``) a 3e-7 difference
    here grew to 1e-4 in the output on near-isotropic regions (docs/mraa.md).
    """
    grid = make_coordinate_grid(heatmap.shape[2:], heatmap.dtype, heatmap.device)
    return (heatmap.unsqueeze(-1) * grid).sum(dim=(2, 3))


def kp2gaussian(
    value: torch.Tensor, spatial_size: tuple[int, int] | torch.Size, kp_variance: float
) -> torch.Tensor:
    """Isotropic gaussian bump around each keypoint: (..., K, 2) -> (..., K, H, W)."""
    grid = make_coordinate_grid(spatial_size, value.dtype, value.device)
    diff = grid - value[..., None, None, :]
    return torch.exp(-0.5 * diff.pow(2).sum(-1) / kp_variance)


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur followed by integer-stride subsampling (band-limited downscaling).

    The depthwise kernel is a buffer named ``weight`` because released checkpoints store it.
    """

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.groups = channels
        self.stride = int(1 / scale)
        # sigma chosen so that the blur removes frequencies above the new Nyquist limit
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.pad = size // 2
        if sigma > 0:
            coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
            g = torch.exp(-coords.pow(2) / (2 * sigma**2))
            kernel = g[:, None] * g[None, :]
            kernel = kernel / kernel.sum()
        else:
            kernel = torch.ones(1, 1)
        self.register_buffer("weight", kernel.expand(channels, 1, size, size).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        x = F.pad(x, (self.pad, self.pad, self.pad, self.pad))
        # a strided conv equals blur-then-slice [::stride] at a fraction of the cost
        return F.conv2d(x, self.weight, stride=self.stride, groups=self.groups)


class ResBlock2d(nn.Module):
    """Pre-activation residual block; keeps channels and resolution."""

    def __init__(
        self,
        in_features: int,
        kernel_size: int | tuple[int, int] = 3,
        padding: int | tuple[int, int] = 1,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, in_features, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(in_features, in_features, kernel_size, padding=padding)
        self.norm1 = norm_layer(in_features, affine=True)
        self.norm2 = norm_layer(in_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class _ConvNormReLU(nn.Module):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | tuple[int, int] = 3,
        padding: int | tuple[int, int] = 1,
        groups: int = 1,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_features, out_features, kernel_size, padding=padding, groups=groups
        )
        self.norm = norm_layer(out_features, affine=True)


class SameBlock2d(_ConvNormReLU):
    """conv -> BN -> ReLU at constant resolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class DownBlock2d(_ConvNormReLU):
    """conv -> BN -> ReLU -> 2x2 average pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class _Nearest2x(torch.autograd.Function):
    """Forward: a broadcast copy; backward: aten's own upsample_nearest2d backward (so training
    gradients stay bit-identical to ``F.interpolate``'s)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - autograd signature
        b, c, h, w = x.shape
        ctx.input_size = (b, c, h, w)
        return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        b, c, h, w = ctx.input_size
        return torch.ops.aten.upsample_nearest2d_backward(grad, [2 * h, 2 * w], [b, c, h, w], 2.0, 2.0)


def upsample_nearest_2x(x: torch.Tensor) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=2, mode="nearest")``, value for value and gradient for
    gradient, ~10x faster on CPU for contiguous input (torch 2.x's ``upsample_nearest2d`` converts
    to channels-last and back: 20 ms vs 2 ms on (16, 64, 32, 32)). Channels-last input (the
    benchmarks' optimised mode) keeps ``F.interpolate``, which keeps its memory format."""
    if not x.is_contiguous():
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    return _Nearest2x.apply(x)


#: Output channels up to which :class:`FewOutputConv2d` runs by rows at inference on a CPU.
#: Measured (docs/speed.md): a 7x7 convolution with 1-4 outputs costs oneDNN what one with 16
#: costs (its kernels fill blocks of output channels); by rows it ran 2-4x faster; with 12
#: outputs no faster.
ROW_SUM_MAX_OUTPUTS = 4


def conv2d_by_rows(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int]
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` (stride 1, no dilation, one group) as one
    1 x kw convolution with ``out * kh`` outputs followed by the sum of its kh row-shifted
    slices: the same linear map summed in another order (equal to float rounding)."""
    out_c, in_c, kh, kw = weight.shape
    rows = weight.permute(0, 2, 1, 3).reshape(out_c * kh, in_c, 1, kw)
    # padding (ph, pw) with a kernel one row high: ph zero rows above and below, as conv2d pads
    z = F.conv2d(x, rows, None, padding=padding).unflatten(1, (out_c, kh))
    height = z.shape[3] - kh + 1
    out = z[:, :, 0, :height]
    for i in range(1, kh):
        out = out + z[:, :, i, i : i + height]
    return out if bias is None else out + bias[:, None, None]


class FewOutputConv2d(nn.Conv2d):
    """``nn.Conv2d`` (the same parameters and state-dict keys) for heads with few output channels:
    occlusion maps, the generated image, single Jacobians.

    With autograd off on a CPU (reconstruction, animation, evaluation), a kernel taller than one
    row and at most :data:`ROW_SUM_MAX_OUTPUTS` outputs runs as :func:`conv2d_by_rows`. Training
    (autograd on) and other devices run ``nn.Conv2d`` itself, so training stays bit for bit the
    reference's arithmetic.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            torch.is_grad_enabled()
            or x.device.type != "cpu"
            or self.out_channels > ROW_SUM_MAX_OUTPUTS
            or self.kernel_size[0] == 1
            or self.stride != (1, 1)
            or self.dilation != (1, 1)
            or self.groups != 1
            or self.padding_mode != "zeros"
            or isinstance(self.padding, str)
        ):
            return super().forward(x)
        return conv2d_by_rows(x, self.weight, self.bias, self.padding)


class UpBlock2d(_ConvNormReLU):
    """2x nearest upsampling -> conv -> BN -> ReLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(upsample_nearest_2x(x))))


def encoder_levels(first: nn.Module, down_blocks: nn.ModuleList, image: torch.Tensor) -> list[torch.Tensor]:
    """``first(image)`` and every down block's output after it, finest first: the encoder
    features of the generators, which depend on the source image alone."""
    levels = [first(image)]
    for block in down_blocks:
        levels.append(block(levels[-1]))
    return levels


def _width(block_expansion: int, max_features: int, level: int) -> int:
    return min(max_features, block_expansion * 2**level)


class Encoder(nn.Module):
    """Hourglass encoder; returns the input and every down block's output (the skips)."""

    def __init__(
        self,
        block_expansion: int,
        in_features: int,
        num_blocks: int = 3,
        max_features: int = 256,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(
                in_features if i == 0 else _width(block_expansion, max_features, i),
                _width(block_expansion, max_features, i + 1),
                norm_layer=norm_layer,
            )
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder; concatenates each skip after upsampling (U-Net style)."""

    def __init__(
        self,
        block_expansion: int,
        in_features: int,
        num_blocks: int = 3,
        max_features: int = 256,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            # the deepest block sees only the bottleneck, later ones bottleneck + skip
            mult = 1 if i == num_blocks - 1 else 2
            blocks.append(
                UpBlock2d(
                    mult * _width(block_expansion, max_features, i + 1),
                    _width(block_expansion, max_features, i),
                    norm_layer=norm_layer,
                )
            )
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features
        #: channels of each output of :meth:`forward_levels`, coarsest first
        self.level_filters = [
            2 * _width(block_expansion, max_features, i) for i in reversed(range(1, num_blocks))
        ] + [self.out_filters]

    def forward_levels(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        """Every up block's output (after its skip), coarsest first; the last is ``forward``'s."""
        out, levels = skips[-1], []
        for block, skip in zip(self.up_blocks, reversed(skips[:-1]), strict=True):
            out = torch.cat([block(out), skip], dim=1)
            levels.append(out)
        return levels

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        return self.forward_levels(skips)[-1]


class Hourglass(nn.Module):
    """U-Net; output has ``out_filters = block_expansion + in_features`` channels at input size.

    The spatial size must be divisible by ``2**num_blocks``.
    """

    def __init__(
        self,
        block_expansion: int,
        in_features: int,
        num_blocks: int = 3,
        max_features: int = 256,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features, norm_layer)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features, norm_layer)
        self.out_filters = self.decoder.out_filters
        self.level_filters = self.decoder.level_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def forward_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Decoder outputs at every resolution, coarsest first (TPSMM's multi-resolution masks)."""
        return self.decoder.forward_levels(self.encoder(x))
