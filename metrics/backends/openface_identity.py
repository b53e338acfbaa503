"""Face identity embeddings as the papers computed them: pose-evaluation's ``extract_face_id``.

The network is OpenFace's nn4.small2 as OpenFacePytorch builds it (``netOpenFace`` at commit
d002218, the submodule pose-evaluation pins), in eval mode, on the whole frame:

- the frame is reversed to BGR (``frame[..., ::-1]``) and resized to 96x96 with scikit-image
  0.14.0's ``resize`` defaults (bilinear, ``mode='constant'``, no anti-aliasing, clipped to the
  input's range; float64 in [0, 1]): :func:`data_prep.legacy_resize.skimage014_resize`;
- the float64 image becomes a float32 tensor and the network's first output is taken: the
  128-d embedding divided by ``sqrt(sum(x ** 2) + 1e-6)`` (``(1, 128)`` per frame there).

AED is the squared L2 distance between the embeddings of the generated and ground-truth frame.

The port's structure is reproduced as it is, not as the Lua original: its inception blocks
pad every branch with zeros to the largest branch's size, centred (the pooling branches of
``layer14``..``layer21`` pool with stride 2 or 3 and come out smaller), and its cross-map local
response normalisation (:class:`CrossMapLRN`) keeps a quirk of its running window sum.

Weights come from the registry (``openface_nn4_small2``: OpenFacePytorch's ``openface.pth``);
its keys and shapes must equal ``netOpenFace``'s state_dict.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data_prep.legacy_resize import skimage014_resize
from data_prep.weights import DEFAULT_WEIGHTS_DIR, load_pickled, resolve_with_sha256
from metrics.backends.base import BackendInfo, BatchedIdentity, register_identity_backend

WEIGHTS_NAME = "openface_nn4_small2"
INPUT_SIZE = 96
EMBEDDING_DIM = 128
POOLED_DIM = 736
RANDOM_INIT = "random-init"
PACKAGE = "OpenFacePytorch"
VERSION = "d002218 (pose-evaluation)"


class CrossMapLRN(nn.Module):
    """Local response normalisation across channels, with OpenFacePytorch's arithmetic.

    ``y_c = x_c * (k + alpha / size * s_c) ** -beta`` where ``s_c`` is a running sum of squares
    over channels, updated channel by channel (add the square entering the window, then subtract
    the one leaving it), in float32, as the port's SpatialCrossMapLRN_temp computes it (the
    Python loop of torch.legacy.nn's SpatialCrossMapLRN, run there on CPU and GPU tensors
    alike). That loop shifted Torch7's 1-based indices to 0-based but kept the bound
    ``c > prePad`` for removing a square, so the first square removed is channel 1's:
    channel 0's square never leaves, and from channel ``size // 2 + 1`` on ``s_c`` is the
    window ``[c - size // 2, c + size // 2]`` plus ``x_0 ** 2``. ``torch.nn.LocalResponseNorm``
    has no such term (and sums in another order), so it is not used.
    """

    def __init__(self, size: int, alpha: float, beta: float, k: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squares = torch.pow(x, 2)
        channels = x.shape[1]
        lead = (self.size - 1) // 2 + 1  # squares already summed ahead of (and at) channel 0
        window = squares[:, 0]
        for c in range(1, min(lead, channels)):
            window = window + squares[:, c]
        sums = [window]
        for c in range(1, channels):
            if c + lead - 1 < channels:
                window = window + squares[:, c + lead - 1]
            if c > lead:  # the port's bound (see the class docstring): channel 0 stays in
                window = window - squares[:, c - lead]
            sums.append(window)
        scale = torch.stack(sums, dim=1).mul_(self.alpha / self.size).add_(self.k)
        return torch.pow(scale, -self.beta).mul_(x)


def _conv_bn_relu(names: Sequence[str], conv: nn.Conv2d) -> list[tuple[str, nn.Module]]:
    return [(names[0], conv), (names[1], nn.BatchNorm2d(conv.out_channels)), (names[2], nn.ReLU())]


class Inception(nn.Module):
    """One inception block of the port: ``seq_list`` holds, in order, a 1x1-reduce -> kxk conv
    branch per kernel size, the pooling branch (pool, then a 1x1 conv when ``reduce`` names
    one), and a 1x1 branch when ``reduce`` names one; convolutions are followed by batch norm
    and ReLU. Branch outputs are zero-padded (centred) to the largest height and width, then
    concatenated along channels."""

    def __init__(
        self,
        in_channels: int,
        kernels: Sequence[int],
        strides: Sequence[int],
        outs: Sequence[int],
        reduce: Sequence[int | None],
        pool: nn.Module,
    ) -> None:
        super().__init__()
        branches = []
        for kernel, stride, out, mid in zip(kernels, strides, outs, reduce[: len(kernels)], strict=True):
            layers = _conv_bn_relu(("1_conv", "2_bn", "3_relu"), nn.Conv2d(in_channels, mid, 1))
            layers += _conv_bn_relu(
                ("4_conv", "5_bn", "6_relu"), nn.Conv2d(mid, out, kernel, stride, padding=kernel // 2)
            )
            branches.append(nn.Sequential(OrderedDict(layers)))
        pool_layers: list[tuple[str, nn.Module]] = [("1_pool", pool)]
        extra = list(reduce[len(kernels) :]) + [None, None]
        if extra[0] is not None:
            pool_layers += _conv_bn_relu(("2_conv", "3_bn", "4_relu"), nn.Conv2d(in_channels, extra[0], 1))
        branches.append(nn.Sequential(OrderedDict(pool_layers)))
        if extra[1] is not None:
            branches.append(nn.Sequential(OrderedDict(
                _conv_bn_relu(("1_conv", "2_bn", "3_relu"), nn.Conv2d(in_channels, extra[1], 1))
            )))
        self.seq_list = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = [branch(x) for branch in self.seq_list]
        height = max(y.shape[2] for y in ys)
        width = max(y.shape[3] for y in ys)
        padded = []
        for y in ys:
            dh, dw = height - y.shape[2], width - y.shape[3]
            padded.append(F.pad(y, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)))
        return torch.cat(padded, 1)


def _max_pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=2)


def _lp_pool() -> nn.LPPool2d:
    return nn.LPPool2d(2, 3, stride=3)


class OpenFaceNet(nn.Module):
    """nn4.small2 with the module names of OpenFacePytorch's ``netOpenFace`` (``layer1`` ..
    ``layer25``; the numbers it skips hold nothing) -> (N, 128) normalised embeddings.

    Its input is (N, 3, 96, 96) BGR in [0, 1]. (netOpenFace also accepts 128x128 input, which
    it scales to 96 first; pose-evaluation always resizes to 96, so that path is not kept.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.layer2 = nn.BatchNorm2d(64)
        self.layer3 = nn.ReLU()
        self.layer4 = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer5 = CrossMapLRN(5, 0.0001, 0.75)
        self.layer6 = nn.Conv2d(64, 64, 1)
        self.layer7 = nn.BatchNorm2d(64)
        self.layer8 = nn.ReLU()
        self.layer9 = nn.Conv2d(64, 192, 3, padding=1)
        self.layer10 = nn.BatchNorm2d(192)
        self.layer11 = nn.ReLU()
        self.layer12 = CrossMapLRN(5, 0.0001, 0.75)
        self.layer13 = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer14 = Inception(192, (3, 5), (1, 1), (128, 32), (96, 16, 32, 64), _max_pool())
        self.layer15 = Inception(256, (3, 5), (1, 1), (128, 64), (96, 32, 64, 64), _lp_pool())
        self.layer16 = Inception(320, (3, 5), (2, 2), (256, 64), (128, 32, None, None), _max_pool())
        self.layer17 = Inception(640, (3, 5), (1, 1), (192, 64), (96, 32, 128, 256), _lp_pool())
        self.layer18 = Inception(640, (3, 5), (2, 2), (256, 128), (160, 64, None, None), _max_pool())
        self.layer19 = Inception(1024, (3,), (1,), (384,), (96, 96, 256), _lp_pool())
        self.layer21 = Inception(736, (3,), (1,), (384,), (96, 96, 256), _max_pool())
        self.layer22 = nn.AvgPool2d(3, stride=1)
        self.layer25 = nn.Linear(POOLED_DIM, EMBEDDING_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22):
            x = getattr(self, f"layer{index}")(x)
        x = self.layer25(x.view(-1, POOLED_DIM))
        # netOpenFace's normalisation: the 1e-6 inside the square root is part of it.
        norm = torch.sqrt(torch.sum(x**2, 1) + 1e-6)
        return torch.div(x, norm.view(-1, 1).expand_as(x))


def load_openface_state_dict(
    net: OpenFaceNet, state: Mapping[str, torch.Tensor], source: str = "state_dict"
) -> None:
    """Strict load: every key of ``net`` present with its shape, no other key.

    ``num_batches_tracked`` buffers alone may be absent (openface.pth predates them; torch
    fills them itself for such files, and eval mode never reads them).
    """
    expected = net.state_dict()
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise ValueError(f"{source}: unexpected key {unexpected[0]!r} (not in netOpenFace)")
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    if missing:
        raise ValueError(f"{source}: missing key {missing[0]!r} of netOpenFace")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(
                f"{source}: key {key!r} has shape {tuple(value.shape)}, "
                f"netOpenFace expects {tuple(expected[key].shape)}"
            )
    full = dict(expected)
    full.update(state)
    net.load_state_dict(full, strict=True)


def preprocess(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 3, 96, 96) float32 BGR in [0, 1], as pose-evaluation:
    channels reversed, scikit-image 0.14.0 ``resize(frame, (96, 96))``, float64 -> float32."""
    size = (INPUT_SIZE, INPUT_SIZE)
    resized = np.stack([skimage014_resize(frame[..., ::-1], size) for frame in frames])
    return torch.from_numpy(resized.transpose(0, 3, 1, 2)).float()


@register_identity_backend("openface", weights=lambda **_: [WEIGHTS_NAME])
def build_openface(
    device: str = "cpu",
    weights_dir: str | Path = DEFAULT_WEIGHTS_DIR,
    batch_size: int = 32,
    pretrained: bool = True,
) -> BatchedIdentity:
    """``pretrained=False`` builds the same network at random weights (plumbing tests only)."""
    # The file is checked before the network is built: a missing one stops at once.
    path, sha256 = resolve_with_sha256(WEIGHTS_NAME, weights_dir) if pretrained else (None, RANDOM_INIT)
    net = OpenFaceNet()
    if path is not None:
        state = load_pickled(WEIGHTS_NAME, path)
        if not isinstance(state, Mapping):
            raise ValueError(f"{path}: not a state_dict (a {type(state).__name__})")
        load_openface_state_dict(net, state, source=str(path))
    info = BackendInfo(name="openface", package=PACKAGE, version=VERSION, weights_sha256=sha256)
    return BatchedIdentity(net.eval().to(device), preprocess, EMBEDDING_DIM, info, device, batch_size)
