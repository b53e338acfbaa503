"""The two evaluator interfaces and their registries.

Frames are uint8 RGB arrays ``(N, H, W, 3)`` at the dataset resolution. A keypoint backend
returns pixel coordinates ``(N, J, 2)`` (x, y) with NaN where a joint (or, for faces, the whole
face) was not found; an identity backend returns embeddings ``(N, D)``. Backends batch
internally and run on the device they were built for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from data_prep.registry import Registry


@dataclass(frozen=True)
class BackendInfo:
    """What is recorded beside every number: which evaluator, which version, which weights."""

    name: str
    package: str
    version: str
    weights_sha256: str

    def cache_key(self) -> str:
        """Ground-truth caches are keyed by this: new version or weights -> recompute."""
        return f"{self.name}-{self.version}-{self.weights_sha256[:16]}"


class KeypointBackend(Protocol):
    info: BackendInfo
    num_joints: int

    def detect(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, J, 2) float64 pixel x, y; NaN where not found."""
        ...


class IdentityBackend(Protocol):
    info: BackendInfo

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, D) float64 embeddings (normalised or not, per backend)."""
        ...


def check_frames(frames: np.ndarray) -> None:
    """The frame contract of every backend: uint8 RGB ``(N, H, W, 3)``; else one ValueError."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"frames must be uint8 RGB of shape (N, H, W, 3), got {frames.dtype} {frames.shape}"
        )


def frames_to_tensor(frames: np.ndarray) -> Any:
    """:func:`check_frames`, then the frames as a float32 ``(N, 3, H, W)`` tensor on the 0..255
    scale (the input of the modern backends, which divide by 255 where their networks want it)."""
    import torch

    check_frames(frames)
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()


class BatchedIdentity:
    """An identity backend that embeds ``batch_size`` frames per network call:
    ``net(preprocess(frames))`` -> ``(N, dim)`` float64 (the papers' re-id and OpenFace)."""

    def __init__(
        self, net: Any, preprocess: Callable[[np.ndarray], Any], dim: int, info: BackendInfo,
        device: str, batch_size: int,
    ) -> None:
        import torch

        self.net = net
        self.preprocess = preprocess
        self.dim = dim
        self.info = info
        self.device = torch.device(device)
        self.batch_size = batch_size

    def embed(self, frames: np.ndarray) -> np.ndarray:
        import torch

        check_frames(frames)
        out = [np.zeros((0, self.dim))]
        with torch.no_grad():
            for start in range(0, len(frames), self.batch_size):
                batch = self.preprocess(frames[start : start + self.batch_size]).to(self.device)
                out.append(self.net(batch).double().cpu().numpy())
        return np.concatenate(out)


Factory = Callable[..., Any]
#: ``weights(**params) -> [registry name, ...]``: the weights files a backend built with
#: ``params`` loads (data_prep/weights.py names), for `animbench`'s fetch rule.
WeightsNames = Callable[..., list[str]]


@dataclass(frozen=True)
class BackendEntry:
    """A registered backend: its factory and the weights files it loads."""

    factory: Factory
    weights: WeightsNames


# Modules whose import registers built-in backends; imported on first lookup so that a
# backend's heavy package (openpifpaf, face_alignment, ...) is only imported when used.
BUILTIN_MODULES: tuple[str, ...] = (
    "metrics.backends.synthetic",
    "metrics.backends.openpifpaf_body",
    "metrics.backends.face_alignment_landmarks",
    "metrics.backends.facenet_identity",
    "metrics.backends.torchreid_identity",
    # The papers' evaluators (pose-evaluation's networks; the paper-* protocols).
    "metrics.backends.rtpose_body",
    "metrics.backends.reid_baseline_identity",
    "metrics.backends.openface_identity",
)
KEYPOINT_BACKENDS: Registry[BackendEntry] = Registry("keypoint backend", BUILTIN_MODULES)
IDENTITY_BACKENDS: Registry[BackendEntry] = Registry("identity backend", BUILTIN_MODULES)
_TABLES = {"keypoint": KEYPOINT_BACKENDS, "identity": IDENTITY_BACKENDS}


def _no_weights(**_: Any) -> list[str]:
    return []


def _register(table: Registry[BackendEntry], name: str, weights: WeightsNames) -> Callable[[Factory], Factory]:
    def decorator(factory: Factory) -> Factory:
        table.add(name, BackendEntry(factory, weights))
        return factory

    return decorator


def register_keypoint_backend(
    name: str, weights: WeightsNames = _no_weights
) -> Callable[[Factory], Factory]:
    """Register ``factory(device=..., weights_dir=..., **params) -> KeypointBackend`` and the
    weights-registry names it loads (``weights(**params)``; none by default)."""
    return _register(KEYPOINT_BACKENDS, name, weights)


def register_identity_backend(
    name: str, weights: WeightsNames = _no_weights
) -> Callable[[Factory], Factory]:
    """Register ``factory(device=..., weights_dir=..., **params) -> IdentityBackend`` and the
    weights-registry names it loads (``weights(**params)``; none by default)."""
    return _register(IDENTITY_BACKENDS, name, weights)


def backend_weights(kind: str, name: str, params: dict[str, Any]) -> list[str]:
    """Weights-registry names the ``kind`` ("keypoint" / "identity") backend ``name`` loads."""
    return _TABLES[kind].get(name).weights(**params)


def build_keypoint_backend(name: str, **kwargs: Any) -> KeypointBackend:
    return KEYPOINT_BACKENDS.get(name).factory(**kwargs)


def build_identity_backend(name: str, **kwargs: Any) -> IdentityBackend:
    return IDENTITY_BACKENDS.get(name).factory(**kwargs)


def list_backends() -> dict[str, list[str]]:
    return {"keypoint": KEYPOINT_BACKENDS.names(), "identity": IDENTITY_BACKENDS.names()}
