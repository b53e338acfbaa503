"""Evaluators of the synthetic dataset, trained inside the DAG on its ground truth.

The synthetic dataset knows every joint and every identity, so its evaluators are learned, not
downloaded: a small keypoint network (heatmaps + soft-argmax for the 15 joints, and a visibility
logit per joint) and a small identity-embedding network (L2-normalised embedding, trained as a
cosine classifier over the training identities). ``metrics/train_evaluators.py`` trains them and
writes ``keypoints.pt`` / ``identity.pt``; the backends below load those files, and their
:class:`BackendInfo` carries the file's sha256, so new weights invalidate the ground-truth cache.

Both networks are fully convolutional with a global pooling head, so they run at any frame size
the synthetic builder produces; coordinates come back in input pixels (pixel ``j`` covers
``[j, j+1)``, the ground truth's convention).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from data_prep.io import file_sha256
from metrics.backends.base import BackendInfo, register_identity_backend, register_keypoint_backend

KEYPOINT_FILE = "keypoints.pt"
IDENTITY_FILE = "identity.pt"
NUM_JOINTS = 15


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, 3, stride, dilation, dilation=dilation, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _to_tensor(frames: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1], channels_last in memory.

    Converting before permuting keeps the frames' own (N, H, W, C) layout, which is
    channels_last: no copy, and the layout the inference nets below run fastest in.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (N, H, W, 3), got {frames.dtype} {frames.shape}")
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).to(device, torch.float32)
    return pixels.div_(255.0).permute(0, 3, 1, 2)


def for_inference(net: nn.Module) -> nn.Module:
    """``net`` in eval mode with every conv + BatchNorm pair folded into one conv, channels_last.

    Evaluation only ever runs the trained nets frozen, where a BatchNorm is an affine map of its
    conv's output; folding it removes a pass over every activation (outputs change by float
    rounding only, tested). Measured with tests/benchmarks/bench_metrics.py.
    """
    net = net.eval()
    for module in net.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, norm = module[i], module[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(conv, norm)
                    module[i + 1] = nn.Identity()
    return net.to(memory_format=torch.channels_last)


class KeypointNet(nn.Module):
    """Strided encoder to 1/4 resolution, heatmaps there (soft-argmax is sub-cell), visibility from pooled features.

    Dilated convolutions at 1/4 resolution give every heatmap cell a receptive field wider than
    the figure: telling a left wrist from a right one needs the whole body, not a local patch.
    """

    def __init__(self, num_joints: int = NUM_JOINTS, width: int = 32) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.encoder = nn.Sequential(
            _block(3, width, 2), _block(width, 2 * width, 2), _block(2 * width, 2 * width),
            _block(2 * width, 2 * width, dilation=2), _block(2 * width, 2 * width, dilation=4), _block(2 * width, 2 * width),
        )
        self.heatmap = nn.Conv2d(2 * width, num_joints, 1)
        self.visibility = nn.Linear(4 * width, num_joints)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) in [0, 1] -> (N, J, 2) pixel x, y and (N, J) visibility logits."""
        h, w = x.shape[-2:]
        f = self.encoder(x)
        logits = self.heatmap(f)
        n, j, hh, ww = logits.shape
        prob = logits.flatten(2).softmax(-1).view(n, j, hh, ww)
        # Soft-argmax over heatmap cell centres expressed in input pixels.
        xs = (torch.arange(ww, device=x.device, dtype=x.dtype) + 0.5) * (w / ww)
        ys = (torch.arange(hh, device=x.device, dtype=x.dtype) + 0.5) * (h / hh)
        coords = torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)], dim=-1)
        return coords, self.visibility(torch.cat([f.mean((2, 3)), f.amax((2, 3))], dim=1))


class IdentityNet(nn.Module):
    """Conv encoder, average + max pooling, linear projection, L2-normalised embedding."""

    def __init__(self, dim: int = 64, width: int = 32) -> None:
        super().__init__()
        self.dim = dim
        self.features = nn.Sequential(
            _block(3, width, 2), _block(width, 2 * width, 2), _block(2 * width, 2 * width, 2)
        )
        self.project = nn.Linear(4 * width, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        pooled = torch.cat([f.mean((2, 3)), f.amax((2, 3))], dim=1)
        return F.normalize(self.project(pooled), dim=1)


def _load(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"synthetic {what} evaluator {path} is missing; train it with "
            f"`animbench train-evaluators --dataset <synthetic dataset> --out {path.parent}`"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which one
        raise ValueError(f"synthetic {what} evaluator {path} cannot be loaded ({err}); retrain it") from err
    if not isinstance(payload, dict) or payload.get("kind") != what:
        raise ValueError(f"{path} is not a synthetic {what} evaluator; retrain it")
    return payload


def _info(name: str, path: Path) -> BackendInfo:
    # The version names this module's source too: a changed network definition must not reuse
    # ground-truth detections cached with the old one, even for identical weights.
    version = f"torch{torch.__version__}-src{file_sha256(Path(__file__))[:8]}"
    return BackendInfo(name=name, package="animbench", version=version, weights_sha256=file_sha256(path))


class SyntheticKeypoints:
    """The trained keypoint network as a :class:`KeypointBackend` (NaN for invisible joints)."""

    def __init__(self, path: Path, device: str = "cpu", batch_size: int = 64) -> None:
        payload = _load(path, "keypoint")
        net = KeypointNet(**payload["arch"])
        net.load_state_dict(payload["state_dict"])
        self.net = for_inference(net).to(device)
        self.num_joints = self.net.num_joints
        self.device, self.batch_size = device, batch_size
        self.validation: dict[str, Any] = payload.get("validation", {})
        self.info = _info("synthetic-keypoints", path)

    @torch.inference_mode()
    def detect(self, frames: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(frames), self.batch_size):
            coords, vis = self.net(_to_tensor(frames[start : start + self.batch_size], self.device))
            coords = coords.double().cpu().numpy()
            coords[(vis <= 0).cpu().numpy()] = np.nan
            out.append(coords)
        return np.concatenate(out) if out else np.zeros((0, self.num_joints, 2))


class SyntheticIdentity:
    """The trained identity network as an :class:`IdentityBackend` (unit-norm embeddings)."""

    def __init__(self, path: Path, device: str = "cpu", batch_size: int = 64) -> None:
        payload = _load(path, "identity")
        net = IdentityNet(**payload["arch"])
        net.load_state_dict(payload["state_dict"])
        self.net = for_inference(net).to(device)
        self.device, self.batch_size = device, batch_size
        self.validation: dict[str, Any] = payload.get("validation", {})
        self.info = _info("synthetic-identity", path)

    @torch.inference_mode()
    def embed(self, frames: np.ndarray) -> np.ndarray:
        out = [
            self.net(_to_tensor(frames[s : s + self.batch_size], self.device)).double().cpu().numpy()
            for s in range(0, len(frames), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.net.dim))


@register_keypoint_backend("synthetic")
def build_synthetic_keypoints(device: str = "cpu", weights_dir: str | Path = ".", batch_size: int = 64) -> SyntheticKeypoints:
    """``weights_dir`` is the folder ``train-evaluators`` wrote (``results/{dataset}/evaluators``)."""
    return SyntheticKeypoints(Path(weights_dir) / KEYPOINT_FILE, device, batch_size)


@register_identity_backend("synthetic")
def build_synthetic_identity(device: str = "cpu", weights_dir: str | Path = ".", batch_size: int = 64) -> SyntheticIdentity:
    return SyntheticIdentity(Path(weights_dir) / IDENTITY_FILE, device, batch_size)
