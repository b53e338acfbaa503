"""Body identity features with torchreid's ResNet-50 person re-identification network.

As in the pose-evaluation protocol: each frame is resized to 288x144 (height x width),
ImageNet-normalised, and mapped to the 2048-d globally average-pooled features of a ResNet-50
re-id network, not normalised. AED is the squared L2 distance between the features of the
generated and ground-truth frame. The default weights are torchreid's Market-1501 model
(Market-1501 is what the protocol's re-id baseline was trained on).

Weights come from the registry (``torchreid_resnet50_market1501``), never from torchreid's
own download.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data_prep.weights import DEFAULT_WEIGHTS_DIR, load_pickled, resolve_with_sha256
from metrics.backends.base import BackendInfo, frames_to_tensor, register_identity_backend

WEIGHTS_NAME = "torchreid_resnet50_market1501"
MARKET1501_TRAIN_IDS = 751  # classifier size of the released checkpoint (dropped for features)
RANDOM_INIT = "random-init"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """The frames as float32 (N, 3, H, W) in 0..1, the scale this network reads."""
    return frames_to_tensor(frames) / 255.0


def load_reid_state_dict(net: torch.nn.Module, path: Path) -> None:
    """Load a torchreid checkpoint (``{"state_dict": ...}`` or a bare state_dict) without its classifier."""
    # torchreid's model-zoo files are pickled training checkpoints (epoch, rank-1 next to the
    # state_dict); its size and digest were checked before this point, and the full unpickler is
    # used only for a file whose digest is pinned (data_prep.weights.load_pickled).
    checkpoint = load_pickled(WEIGHTS_NAME, path)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a torchreid checkpoint (no state_dict)")
    state = {k.removeprefix("module."): v for k, v in state.items() if "classifier." not in k}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("classifier.")]
    if missing or unexpected:
        raise ValueError(
            f"{path}: does not match torchreid's resnet50 (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


class TorchreidIdentity:
    """ResNet-50 re-id network -> (N, 2048) pooled features, not normalised."""

    def __init__(
        self, net: torch.nn.Module, info: BackendInfo, device: str, batch_size: int, size: tuple[int, int]
    ) -> None:
        self.net = net
        self.info = info
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.size = size
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @torch.no_grad()
    def embed(self, frames: np.ndarray) -> np.ndarray:
        images = _frames_to_tensor(frames)
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size].to(self.device)
            batch = F.interpolate(batch, size=self.size, mode="bilinear", align_corners=False, antialias=True)
            # In eval mode torchreid's ResNet returns the pooled feature vector, before the classifier.
            out.append(self.net((batch - self._mean) / self._std).double().cpu())
        if not out:
            return np.zeros((0, 2048))
        return torch.cat(out).numpy()


@register_identity_backend("torchreid", weights=lambda **_: [WEIGHTS_NAME])
def build_torchreid(
    device: str = "cpu",
    weights_dir: str | Path = DEFAULT_WEIGHTS_DIR,
    batch_size: int = 32,
    height: int = 288,
    width: int = 144,
    pretrained: bool = True,
) -> TorchreidIdentity:
    """``pretrained=False`` builds the same architecture at random weights (plumbing tests only)."""
    from torchreid.reid.models import build_model

    # pretrained=False here means "no ImageNet download": the re-id weights come from the registry.
    net = build_model("resnet50", num_classes=MARKET1501_TRAIN_IDS, loss="softmax", pretrained=False, use_gpu=False)
    sha256 = RANDOM_INIT
    if pretrained:
        path, sha256 = resolve_with_sha256(WEIGHTS_NAME, weights_dir)
        load_reid_state_dict(net, path)
    info = BackendInfo(
        name="torchreid",
        package="torchreid",
        version=importlib.metadata.version("torchreid"),
        weights_sha256=sha256,
    )
    return TorchreidIdentity(net.eval().to(device), info, device, batch_size, (height, width))
