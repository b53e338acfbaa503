"""68 facial landmarks with face-alignment: the SFD face detector, then FAN 2D.

As in the pose-evaluation protocol: per frame, the 68 2D landmarks (pixel x, y) of the first
detected face (SFD's highest-scoring box after non-maximum suppression). A frame with no face
gives an all-NaN row, which the metric code counts as a skipped frame.

face-alignment 1.5.0 downloads its weights into the torch hub cache and compiles the network
when ``FaceAlignment`` is constructed; here both networks are built from the package's own
classes and loaded from the registry (``fan_2d``, ``sfd``) instead, in eager mode. The enum is
``LandmarksType.TWO_D`` (renamed from ``_2D`` in face-alignment 1.4).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import warnings
from pathlib import Path

import numpy as np
import torch

from data_prep.weights import DEFAULT_WEIGHTS_DIR, resolve_with_sha256
from metrics.backends.base import BackendInfo, register_keypoint_backend

NUM_LANDMARKS = 68
FAN_WEIGHTS, SFD_WEIGHTS = "fan_2d", "sfd"
RANDOM_INIT = "random-init"


def _frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"frames must be uint8 RGB of shape (N, H, W, 3), got {frames.dtype} {frames.shape}"
        )
    # face-alignment's batch path takes RGB float on the 0..255 scale.
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()


class FaceAlignmentLandmarks:
    """SFD + FAN 2D -> (N, 68, 2) pixel landmarks of the first face; NaN rows where none."""

    num_joints = NUM_LANDMARKS

    def __init__(self, aligner, info: BackendInfo, batch_size: int) -> None:
        self.aligner = aligner
        self.info = info
        self.batch_size = batch_size

    def detect(self, frames: np.ndarray) -> np.ndarray:
        images = _frames_to_tensor(frames)
        out = np.full((len(images), NUM_LANDMARKS, 2), np.nan)
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size]
            # SFD runs batched; its boxes come out of non-maximum suppression in descending
            # score order, so the first box is the first (most confident) face.
            boxes = self.aligner.face_detector.detect_from_batch(batch)
            for i, faces in enumerate(boxes):
                if len(faces) == 0:
                    continue  # no face: the row stays NaN and the frame is counted as skipped
                image = batch[i].numpy().transpose(1, 2, 0)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="No faces were detected")
                    points = self.aligner.get_landmarks_from_image(image, detected_faces=[faces[0]])
                if points:
                    out[start + i] = np.asarray(points[0], dtype=np.float64)[:NUM_LANDMARKS, :2]
        return out


def _load_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@register_keypoint_backend("face_alignment", weights=lambda **_: [FAN_WEIGHTS, SFD_WEIGHTS])
def build_face_alignment(
    device: str = "cpu",
    weights_dir: str | Path = DEFAULT_WEIGHTS_DIR,
    batch_size: int = 8,
    face_threshold: float = 0.5,
    flip_input: bool = True,
    pretrained: bool = True,
) -> FaceAlignmentLandmarks:
    """``face_threshold`` is SFD's score threshold (face-alignment's default 0.5);
    ``pretrained=False`` builds both networks at random weights (plumbing tests only)."""
    from face_alignment.api import FaceAlignment, LandmarksType, NetworkSize
    from face_alignment.detection.core import FaceDetector
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.detection.sfd.sfd_detector import SFDDetector
    from face_alignment.models import FAN

    fan, sfd_net = FAN(int(NetworkSize.LARGE)), s3fd()
    sha256, weights_files = RANDOM_INIT, {}
    if pretrained:
        fan_path, fan_sha = resolve_with_sha256(FAN_WEIGHTS, weights_dir)
        sfd_path, sfd_sha = resolve_with_sha256(SFD_WEIGHTS, weights_dir)
        fan.load_state_dict(_load_state(fan_path))
        sfd_net.load_state_dict(_load_state(sfd_path))
        # One digest for the pair (sha256 of "<fan sha256>+<sfd sha256>"), so that either file
        # changing invalidates cached ground truth; the two file digests stay in weights_files.
        weights_files = {FAN_WEIGHTS: fan_sha, SFD_WEIGHTS: sfd_sha}
        sha256 = hashlib.sha256(f"{fan_sha}+{sfd_sha}".encode()).hexdigest()

    # The package's classes, filled in without their constructors (which would download from
    # the hub and torch.compile): same attributes, our weights.
    detector = SFDDetector.__new__(SFDDetector)
    FaceDetector.__init__(detector, device, False)
    detector.filter_threshold = face_threshold
    detector.face_detector = sfd_net.to(device).eval()

    aligner = FaceAlignment.__new__(FaceAlignment)
    aligner.device = device
    aligner.flip_input = flip_input
    aligner.landmarks_type = LandmarksType.TWO_D
    aligner.verbose = False
    aligner.dtype = torch.float32
    aligner.max_batch_size = batch_size
    aligner.face_detector = detector
    aligner.face_alignment_net = fan.to(device).eval()

    info = BackendInfo(
        name="face_alignment",
        package="face-alignment",
        version=importlib.metadata.version("face-alignment"),
        weights_sha256=sha256,
    )
    backend = FaceAlignmentLandmarks(aligner, info, batch_size)
    backend.weights_files = weights_files
    return backend
