"""Face identity embeddings with facenet-pytorch's InceptionResnetV1 trained on VGGFace2.

The protocol's face AED embeds the whole frame, not a detected crop (the original used OpenFace
at 96x96 on the whole frame): each frame is resized to the network's 160x160 input, standardised
as facenet-pytorch does (``(x - 127.5) / 128``) and mapped to a 512-d L2-normalised embedding.
AED is the squared L2 distance between the embeddings of the generated and ground-truth frame.

Weights come from the registry (``facenet_vggface2``), never from facenet-pytorch's own download.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data_prep.weights import DEFAULT_WEIGHTS_DIR, resolve_with_sha256
from metrics.backends.base import BackendInfo, frames_to_tensor, register_identity_backend

WEIGHTS_NAME = "facenet_vggface2"
RANDOM_INIT = "random-init"  # weights_sha256 of a network built with pretrained=False (tests only)
_frames_to_tensor = frames_to_tensor  # facenet-pytorch normalises from the 0..255 scale itself


class FacenetIdentity:
    """InceptionResnetV1 on whole frames -> (N, 512) L2-normalised embeddings."""

    def __init__(
        self, net: torch.nn.Module, info: BackendInfo, device: str, batch_size: int, image_size: int
    ) -> None:
        self.net = net
        self.info = info
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.image_size = image_size

    @torch.no_grad()
    def embed(self, frames: np.ndarray) -> np.ndarray:
        images = _frames_to_tensor(frames)
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size].to(self.device)
            if batch.shape[-2:] != (self.image_size, self.image_size):
                batch = F.interpolate(
                    batch, size=(self.image_size, self.image_size), mode="bilinear",
                    align_corners=False, antialias=True,
                )
            # facenet-pytorch's fixed_image_standardization, on the 0..255 pixel scale.
            out.append(self.net((batch - 127.5) / 128.0).double().cpu())
        if not out:
            return np.zeros((0, 512))
        return torch.cat(out).numpy()


@register_identity_backend("facenet", weights=lambda **_: [WEIGHTS_NAME])
def build_facenet(
    device: str = "cpu",
    weights_dir: str | Path = DEFAULT_WEIGHTS_DIR,
    batch_size: int = 32,
    image_size: int = 160,
    pretrained: bool = True,
) -> FacenetIdentity:
    """``pretrained=False`` builds the same architecture at random weights (plumbing tests only)."""
    from facenet_pytorch import InceptionResnetV1

    net = InceptionResnetV1(pretrained=None, classify=False)
    sha256 = RANDOM_INIT
    if pretrained:
        path, sha256 = resolve_with_sha256(WEIGHTS_NAME, weights_dir)
        state = torch.load(path, map_location="cpu", weights_only=True)
        # The released state_dict carries the VGGFace2 classifier (8631 identities); the
        # embedding does not use it.
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        net.load_state_dict(state, strict=True)
    info = BackendInfo(
        name="facenet",
        package="facenet-pytorch",
        version=importlib.metadata.version("facenet-pytorch"),
        weights_sha256=sha256,
    )
    return FacenetIdentity(net.eval().to(device), info, device, batch_size, image_size)
