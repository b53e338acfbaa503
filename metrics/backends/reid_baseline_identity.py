"""Body identity features as the papers computed them: pose-evaluation's ``extract_body_id``.

The network is Person_reID_baseline_pytorch's ``ft_net(751)`` at commit 2a5a656 (the submodule
pose-evaluation pins): torchvision's ResNet-50 with a 512-d bottleneck head (``model.fc``) and a
751-way Market-1501 classifier. pose-evaluation loads the released ``reid_model.pth`` into it and
then replaces both ``model.fc`` and ``classifier`` with empty ``nn.Sequential``, so a frame maps
to the 2048-d globally average-pooled ResNet-50 features, not normalised (ft_net's forward
returns ``(1, 2048)`` per frame, no squeeze). AED is the squared L2 distance between the
features of the generated and the ground-truth frame.

Two facts of that code decide the numbers and are reproduced exactly:

- **Training mode.** ``extract_body_id`` never calls ``net.eval()``, so every BatchNorm layer
  normalises with the statistics of the batch it sees, and it sees one frame at a time: each
  frame is normalised per channel with its own mean and (biased) variance, then scaled by the
  layer's affine weight and bias; the running statistics are never used. Here the frames are
  batched, so every BatchNorm2d computes those per-frame statistics itself (instance
  normalisation with the layer's affine parameters and eps): a frame's features do not depend
  on the other frames of the batch, and the running statistics are left untouched. (ResNet-50
  has no dropout; ft_net's dropout was in the removed head.)
- **Preprocessing.** torchvision 0.2.1 transforms: ``ToPILImage``, ``Resize((288, 144),
  interpolation=3)`` (PIL bicubic, to 288 rows x 144 columns), ``ToTensor`` (x / 255),
  ``Normalize([0, 0, 0], [255, 255, 255])`` (a second division by 255: pixel values end up in
  [0, 1/255]), then ImageNet ``Normalize``. The resize is PIL's own, as there; the divisions
  are the same float32 operations in the same order.

Weights come from the registry (``reid_baseline_ft_net``: pose-evaluation's ``reid_model.pth``).
The file's keys and shapes must equal ``ft_net(751)``'s state_dict, classifier included, as
pose-evaluation's strict ``load_state_dict`` required; the head is dropped after loading.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from data_prep.weights import DEFAULT_WEIGHTS_DIR, load_pickled, resolve_with_sha256
from metrics.backends.base import BackendInfo, BatchedIdentity, register_identity_backend

WEIGHTS_NAME = "reid_baseline_ft_net"
MARKET1501_TRAIN_IDS = 751  # ft_net's classifier size in the released model (dropped for features)
BOTTLENECK = 512  # ft_net's head: Linear(2048, 512), BatchNorm1d, LeakyReLU(0.1), Dropout(0.5)
FEATURE_DIM = 2048
INPUT_SIZE = (288, 144)  # rows, columns
RANDOM_INIT = "random-init"
PACKAGE = "Person_reID_baseline_pytorch"
VERSION = "2a5a656 (pose-evaluation)"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerFrameBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d in training mode fed one frame at a time, for a whole batch at once.

    Each sample is normalised per channel with its own mean and biased variance (what training-
    mode batch norm does to a batch of one), then the layer's weight and bias are applied. The
    running statistics stay as loaded: they are never read, and never updated.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.weight, bias=self.bias, use_input_stats=True, eps=self.eps)


class FtNet(nn.Module):
    """The module layout of Person_reID_baseline_pytorch's ``ft_net(class_num)`` at 2a5a656:
    ``model`` is torchvision's ResNet-50 with global average pooling and the bottleneck head as
    ``model.fc``; ``classifier`` maps the bottleneck to the training identities. Only its
    state_dict names and shapes matter here (the head is dropped before use)."""

    def __init__(self, class_num: int = MARKET1501_TRAIN_IDS) -> None:
        super().__init__()
        from torchvision.models import resnet50

        self.model = resnet50(weights=None)
        self.model.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.model.fc = nn.Sequential(
            nn.Linear(FEATURE_DIM, BOTTLENECK),
            nn.BatchNorm1d(BOTTLENECK),
            nn.LeakyReLU(0.1),
            nn.Dropout(p=0.5),
        )
        self.classifier = nn.Sequential(nn.Linear(BOTTLENECK, class_num))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.model(x))


def load_ft_net_state_dict(
    net: FtNet, state: Mapping[str, torch.Tensor], source: str = "state_dict"
) -> None:
    """Strict load: every key of ``net`` present with its shape, no other key.

    ``num_batches_tracked`` buffers alone may be absent: files saved before torch 0.4.1 have
    none, and torch itself fills them when loading such a file (their value is never used).
    """
    expected = net.state_dict()
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise ValueError(f"{source}: unexpected key {unexpected[0]!r} (not in ft_net(751))")
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    if missing:
        raise ValueError(f"{source}: missing key {missing[0]!r} of ft_net(751)")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(
                f"{source}: key {key!r} has shape {tuple(value.shape)}, "
                f"ft_net(751) expects {tuple(expected[key].shape)}"
            )
    full = dict(expected)
    full.update(state)
    net.load_state_dict(full, strict=True)


def feature_network(net: FtNet) -> nn.Module:
    """What pose-evaluation runs: ft_net without its head (``model.fc`` emptied, ``classifier``
    dropped: both were empty ``nn.Sequential`` there), every BatchNorm2d normalising each frame
    with its own statistics."""
    trunk = net.model
    trunk.fc = nn.Sequential()
    for parent in list(trunk.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                per_frame = PerFrameBatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
                per_frame.load_state_dict(child.state_dict())
                setattr(parent, name, per_frame)
    # Nothing left in the trunk depends on the mode (ResNet-50 has no dropout; the per-frame
    # statistics are computed in either); eval() only states that nothing is being trained.
    return trunk.eval()


def preprocess(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 3, 288, 144) float32, as pose-evaluation's transforms:
    ToPILImage, PIL bicubic resize, ToTensor (/ 255), / 255 again, ImageNet normalisation."""
    rows, cols = INPUT_SIZE
    bicubic = Image.Resampling.BICUBIC  # interpolation=3 in torchvision 0.2.1's Resize
    resized = [np.asarray(Image.fromarray(f).resize((cols, rows), bicubic)) for f in frames]
    images = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float().div(255)
    # Normalize([0, 0, 0], [255, 255, 255]) after ToTensor: a second division by 255, kept as
    # a separate float32 division (x / 65025 would round differently).
    images = images.div(255)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return images.sub(mean).div(std)


@register_identity_backend("reid_baseline", weights=lambda **_: [WEIGHTS_NAME])
def build_reid_baseline(
    device: str = "cpu",
    weights_dir: str | Path = DEFAULT_WEIGHTS_DIR,
    batch_size: int = 8,
    pretrained: bool = True,
) -> BatchedIdentity:
    """``pretrained=False`` builds the same network at random weights (plumbing tests only).

    ``batch_size`` 8: on x86 CPUs oneDNN picks another kernel for a 1x1 convolution from batch 16
    on, 2.8e-5 away from the reference's one-frame result; up to 8 it was bit-identical, and
    batching gains little on a CPU anyway (docs/evaluators.md)."""
    # The file is checked before the network is built: a missing one stops at once.
    path, sha256 = resolve_with_sha256(WEIGHTS_NAME, weights_dir) if pretrained else (None, RANDOM_INIT)
    net = FtNet(MARKET1501_TRAIN_IDS)
    if path is not None:
        state = load_pickled(WEIGHTS_NAME, path)
        if not isinstance(state, Mapping):
            raise ValueError(f"{path}: not a state_dict (a {type(state).__name__})")
        load_ft_net_state_dict(net, state, source=str(path))
    info = BackendInfo(name="reid_baseline", package=PACKAGE, version=VERSION, weights_sha256=sha256)
    return BatchedIdentity(feature_network(net).to(device), preprocess, FEATURE_DIM, info, device, batch_size)
