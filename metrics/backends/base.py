"""The two evaluator interfaces and their registries.

Frames are uint8 RGB arrays ``(N, H, W, 3)`` at the dataset resolution. A keypoint backend
returns pixel coordinates ``(N, J, 2)`` (x, y) with NaN where a joint (or, for faces, the whole
face) was not found; an identity backend returns embeddings ``(N, D)``. Backends batch
internally and run on the device they were built for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


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


Factory = Callable[..., Any]
#: ``weights(**params) -> [registry name, ...]``: the weights files a backend built with
#: ``params`` loads (methods/weights.py names), for `animbench`'s fetch rule.
WeightsNames = Callable[..., list[str]]
_KEYPOINT: dict[str, Factory] = {}
_IDENTITY: dict[str, Factory] = {}
_WEIGHTS: dict[tuple[str, str], WeightsNames] = {}

# Modules whose import registers built-in backends; imported on first lookup so that a
# backend's heavy package (openpifpaf, face_alignment, ...) is only imported when used.
BUILTIN_MODULES: tuple[str, ...] = (
    "metrics.backends.synthetic",
    "metrics.backends.openpifpaf_body",
    "metrics.backends.face_alignment_landmarks",
    "metrics.backends.facenet_identity",
    "metrics.backends.torchreid_identity",
)
_loaded = False


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def _no_weights(**_: Any) -> list[str]:
    return []


def _register(
    table: dict[str, Factory], kind: str, name: str, weights: WeightsNames
) -> Callable[[Factory], Factory]:
    def decorator(factory: Factory) -> Factory:
        if name in table and table[name] is not factory:
            raise ValueError(f"{kind} backend {name!r} is already registered")
        table[name] = factory
        _WEIGHTS[(kind, name)] = weights
        return factory

    return decorator


def register_keypoint_backend(
    name: str, weights: WeightsNames = _no_weights
) -> Callable[[Factory], Factory]:
    """Register ``factory(device=..., weights_dir=..., **params) -> KeypointBackend`` and the
    weights-registry names it loads (``weights(**params)``; none by default)."""
    return _register(_KEYPOINT, "keypoint", name, weights)


def register_identity_backend(
    name: str, weights: WeightsNames = _no_weights
) -> Callable[[Factory], Factory]:
    """Register ``factory(device=..., weights_dir=..., **params) -> IdentityBackend`` and the
    weights-registry names it loads (``weights(**params)``; none by default)."""
    return _register(_IDENTITY, "identity", name, weights)


def backend_weights(kind: str, name: str, params: dict[str, Any]) -> list[str]:
    """Weights-registry names the ``kind`` ("keypoint" / "identity") backend ``name`` loads."""
    _load_builtins()
    if (kind, name) not in _WEIGHTS:
        raise KeyError(f"unknown {kind} backend {name!r}")
    return _WEIGHTS[(kind, name)](**params)


def _build(table: dict[str, Factory], kind: str, name: str, **kwargs: Any) -> Any:
    _load_builtins()
    if name not in table:
        raise KeyError(f"unknown {kind} backend {name!r}; known: {', '.join(sorted(table)) or 'none'}")
    return table[name](**kwargs)


def build_keypoint_backend(name: str, **kwargs: Any) -> KeypointBackend:
    return _build(_KEYPOINT, "keypoint", name, **kwargs)


def build_identity_backend(name: str, **kwargs: Any) -> IdentityBackend:
    return _build(_IDENTITY, "identity", name, **kwargs)


def list_backends() -> dict[str, list[str]]:
    _load_builtins()
    return {"keypoint": sorted(_KEYPOINT), "identity": sorted(_IDENTITY)}
