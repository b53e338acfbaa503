"""Keypoint and identity evaluators behind AKD, MKR and AED, picked by name from a protocol.

Every backend, real (openpifpaf, face-alignment, facenet-pytorch, torchreid) or trained on the
synthetic ground truth, implements :class:`KeypointBackend` or :class:`IdentityBackend` and
registers a factory here; the metric code never knows which one it runs.
"""

from .base import (
    BackendInfo,
    IdentityBackend,
    KeypointBackend,
    backend_weights,
    build_identity_backend,
    build_keypoint_backend,
    list_backends,
    register_identity_backend,
    register_keypoint_backend,
)

__all__ = [
    "BackendInfo",
    "backend_weights",
    "IdentityBackend",
    "KeypointBackend",
    "build_identity_backend",
    "build_keypoint_backend",
    "list_backends",
    "register_identity_backend",
    "register_keypoint_backend",
]
