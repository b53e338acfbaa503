"""Body keypoints with openpifpaf (bottom-up, COCO's 17 person keypoints).

The pose-evaluation protocol used OpenPose's 18 COCO-style joints (the 17 COCO keypoints plus a
"neck"); openpifpaf predicts the 17 COCO keypoints, so body AKD/MKR here are over 17 joints and
are not digit-for-digit comparable with the papers' numbers. Per frame: the keypoints of the
highest-scoring person; a joint openpifpaf does not find (confidence 0 after its decoder's
keypoint threshold) is NaN, i.e. missing for MKR. Frames are batched through the network on the
configured device; decoding (openpifpaf's C++ CifCaf decoder) runs per frame on the CPU.

The default checkpoint is openpifpaf's own default, ShuffleNetV2-K16 trained on COCO keypoints
(registry entry ``openpifpaf_shufflenetv2k16``). It is loaded from the registry, never from
openpifpaf's hub download.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data_prep.weights import DEFAULT_WEIGHTS_DIR, load_pickled, resolve_with_sha256
from metrics.backends.base import BackendInfo, frames_to_tensor, register_keypoint_backend

NUM_JOINTS = 17
RANDOM_INIT = "random-init"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STRIDE = 16  # the network's output stride: inputs are padded to STRIDE * k + 1 pixels


def _frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """The frames as float32 (N, 3, H, W) in 0..1, the scale this network reads."""
    return frames_to_tensor(frames) / 255.0


def annotations_to_keypoints(annotations: list, num_joints: int = NUM_JOINTS) -> np.ndarray:
    """(J, 2) pixel x, y of the highest-scoring annotation; NaN for joints with confidence 0."""
    out = np.full((num_joints, 2), np.nan)
    if not annotations:
        return out
    best = max(annotations, key=lambda ann: ann.score)
    data = np.asarray(best.data, dtype=np.float64)
    found = data[:num_joints, 2] > 0
    out[found] = data[:num_joints][found, :2]
    return out


class OpenpifpafBody:
    """openpifpaf CifCaf -> (N, 17, 2) pixel keypoints of the main person; NaN where missing."""

    num_joints = NUM_JOINTS

    def __init__(self, net: torch.nn.Module, decoder, info: BackendInfo, device: str, batch_size: int) -> None:
        self.net = net
        self.decoder = decoder
        self.info = info
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def _preprocess(self, images: torch.Tensor) -> torch.Tensor:
        # Normalise, then pad right/bottom to STRIDE*k+1 with zeros (= the ImageNet mean colour,
        # openpifpaf's own padding value), so keypoint coordinates need no offset.
        x = (images - self._mean) / self._std
        height, width = x.shape[-2:]
        pad_h = (-(height - 1)) % STRIDE
        pad_w = (-(width - 1)) % STRIDE
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x

    def detect(self, frames: np.ndarray) -> np.ndarray:
        images = _frames_to_tensor(frames)
        out = np.full((len(images), NUM_JOINTS, 2), np.nan)
        for start in range(0, len(images), self.batch_size):
            batch = self._preprocess(images[start : start + self.batch_size])
            predictions = self.decoder.batch(self.net, batch, device=self.device)
            for i, people in enumerate(predictions):
                out[start + i] = annotations_to_keypoints(people)
        return out


DEFAULT_CHECKPOINT = "shufflenetv2k16"


def weights_name(checkpoint: str = DEFAULT_CHECKPOINT) -> str:
    """The weights-registry name of an openpifpaf checkpoint."""
    return f"openpifpaf_{checkpoint}"


@register_keypoint_backend(
    "openpifpaf", weights=lambda checkpoint=DEFAULT_CHECKPOINT, **_: [weights_name(checkpoint)]
)
def build_openpifpaf(
    device: str = "cpu",
    weights_dir: str | Path = DEFAULT_WEIGHTS_DIR,
    batch_size: int = 8,
    checkpoint: str = DEFAULT_CHECKPOINT,
    pretrained: bool = True,
) -> OpenpifpafBody:
    """``pretrained=False`` builds the checkpoint's architecture (base network ``checkpoint``
    with COCO keypoint CIF/CAF heads) at random weights (plumbing tests only)."""
    import openpifpaf
    from openpifpaf.network.model_migration import model_migration
    from openpifpaf.plugins.coco import CocoKp

    factory = openpifpaf.network.Factory()
    sha256 = RANDOM_INIT
    if pretrained:
        path, sha256 = resolve_with_sha256(weights_name(checkpoint), weights_dir)
        # openpifpaf checkpoints are pickled whole models (not state_dicts): unpickled only
        # after the size and digest checks above, and only when the digest is pinned.
        net = load_pickled(weights_name(checkpoint), path)["model"]
        model_migration(net)
        factory.consolidate_heads(net, CocoKp().head_metas)
    else:
        net = openpifpaf.network.Factory(base_name=checkpoint).from_scratch(CocoKp().head_metas)
    net = factory.init_net(net).to(device)
    decoder = openpifpaf.decoder.factory(net.head_metas)
    info = BackendInfo(
        name="openpifpaf",
        package="openpifpaf",
        version=importlib.metadata.version("openpifpaf"),
        weights_sha256=sha256,
    )
    return OpenpifpafBody(net, decoder, info, device, batch_size)
