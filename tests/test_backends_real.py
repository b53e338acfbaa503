"""The real evaluator backends: real architectures at random weights, real MTCNN on a real face.

Weights files cannot be downloaded here, so each backend is built with ``pretrained=False`` (the
same network, randomly initialised) to test its plumbing: shapes, NaN conventions, batching,
normalisation. facenet-pytorch ships MTCNN's weights inside the package, so face detection is
tested for real on scikit-image's astronaut photograph. Packages are installed by `make`
(requirements.lock + workflow/scripts/install_evaluators.sh); a test skips only if its package is
absent, with the install command in the reason.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_prep.weights import REGISTRY, MissingWeightsError
from metrics.backends import build_identity_backend, build_keypoint_backend, list_backends

INSTALL = "install with `bash workflow/scripts/install_evaluators.sh` (run by `make`)"


def _need(module: str) -> None:
    pytest.importorskip(module, reason=f"{module} not installed; {INSTALL}")


@pytest.fixture(autouse=True)
def _two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def test_all_four_backends_are_registered():
    backends = list_backends()
    assert {"openpifpaf", "face_alignment"} <= set(backends["keypoint"])
    assert {"facenet", "torchreid"} <= set(backends["identity"])


@pytest.mark.slow  # a full-size FAN / InceptionResnetV1 forward pass on CPU
def test_facenet_embeds_whole_frames_to_unit_512d_and_batching_does_not_change_them():
    _need("facenet_pytorch")
    frames = _frames(3, 48, 40)
    # 96x96 instead of the 160x160 default keeps the test fast; the network is the same.
    backend = build_identity_backend("facenet", pretrained=False, batch_size=2, image_size=96)
    emb = backend.embed(frames)
    assert emb.shape == (3, 512) and emb.dtype == np.float64 and np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([backend.embed(frames[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(one_by_one, emb, atol=1e-4)
    assert backend.info.package == "facenet-pytorch" and backend.info.version == "2.5.3"
    assert backend.info.weights_sha256 == "random-init"


def test_torchreid_gives_pooled_2048d_features_not_normalised():
    _need("torchreid")
    backend = build_identity_backend("torchreid", pretrained=False, batch_size=2)
    emb = backend.embed(_frames(3, 40, 32))
    assert emb.shape == (3, 2048) and np.isfinite(emb).all()
    # Average-pooled ReLU activations: non-negative, and not scaled to unit length.
    assert (emb >= 0).all()
    assert np.abs(np.linalg.norm(emb, axis=1) - 1.0).max() > 0.1
    assert backend.info.package == "torchreid" and backend.info.version == "0.2.5"


def test_identity_backends_reject_non_uint8_frames():
    _need("facenet_pytorch")
    backend = build_identity_backend("facenet", pretrained=False)
    with pytest.raises(ValueError, match="uint8"):
        backend.embed(np.zeros((1, 8, 8, 3), dtype=np.float32))


def test_face_alignment_without_a_face_gives_all_nan_rows():
    _need("face_alignment")
    # A score threshold above 1 rejects every SFD box: the "no face" path, deterministically.
    backend = build_keypoint_backend("face_alignment", pretrained=False, face_threshold=1.01)
    points = backend.detect(_frames(2, 32, 32))
    assert points.shape == (2, 68, 2) and np.isnan(points).all()
    assert backend.num_joints == 68


@pytest.mark.slow  # a full-size FAN / InceptionResnetV1 forward pass on CPU
def test_face_alignment_uses_the_first_face_and_leaves_faceless_frames_nan(monkeypatch):
    _need("face_alignment")
    backend = build_keypoint_backend("face_alignment", pretrained=False, flip_input=False)
    first, second = np.array([4.0, 6.0, 28.0, 30.0, 0.9]), np.array([0.0, 0.0, 16.0, 16.0, 0.8])
    # Fixed detector output (random SFD weights give arbitrary boxes); the FAN stays real.
    monkeypatch.setattr(
        backend.aligner.face_detector, "detect_from_batch", lambda batch: [[first, second], []]
    )
    points = backend.detect(_frames(2, 32, 32))
    assert points.shape == (2, 68, 2)
    assert np.isfinite(points[0]).all() and np.isnan(points[1]).all()
    # FAN reads a square crop around the first box (about twice its size): every landmark of a
    # random network still lies in that crop, never around the second box alone.
    assert (points[0] >= first[:2] - 24).all() and (points[0] <= first[2:4] + 24).all()


def test_openpifpaf_random_weights_returns_17_joints_in_pixels_or_nan():
    _need("openpifpaf")
    backend = build_keypoint_backend("openpifpaf", pretrained=False, batch_size=2)
    frames = _frames(3, 48, 40)
    points = backend.detect(frames)
    assert points.shape == (3, 17, 2) and points.dtype == np.float64
    # Each joint is either missing (both coordinates NaN) or a finite coordinate.
    assert (np.isnan(points[..., 0]) == np.isnan(points[..., 1])).all()
    assert backend.info.package == "openpifpaf" and backend.info.version == "0.13.11"


def test_openpifpaf_annotation_of_the_best_person_with_missing_joints_as_nan():
    _need("openpifpaf")
    from openpifpaf import Annotation
    from openpifpaf.plugins.coco.constants import COCO_KEYPOINTS, COCO_PERSON_SKELETON

    from metrics.backends.openpifpaf_body import annotations_to_keypoints

    def person(offset: float, score: float, missing: list[int]) -> Annotation:
        data = np.zeros((17, 3), dtype=np.float32)
        data[:, 0], data[:, 1], data[:, 2] = np.arange(17) + offset, 2 * np.arange(17) + offset, 0.8
        data[missing] = 0.0
        return Annotation(COCO_KEYPOINTS, COCO_PERSON_SKELETON).set(data, fixed_score=score)

    points = annotations_to_keypoints([person(100, 0.3, []), person(5, 0.9, [0, 16])])
    assert np.isnan(points[[0, 16]]).all()
    np.testing.assert_allclose(points[1:16, 0], np.arange(1, 16) + 5)
    np.testing.assert_allclose(points[1:16, 1], 2 * np.arange(1, 16) + 5)
    assert np.isnan(annotations_to_keypoints([])).all()


def test_mtcnn_finds_the_astronauts_face():
    _need("facenet_pytorch")
    skdata = pytest.importorskip("skimage.data", reason=f"scikit-image not installed; {INSTALL}")
    from facenet_pytorch import MTCNN

    image = skdata.astronaut()  # 512x512 photograph shipped inside scikit-image
    boxes, probs = MTCNN(device="cpu", keep_all=True).detect(image)
    assert boxes is not None and len(boxes) == 1 and probs[0] > 0.95
    # Face region labelled by hand (hairline to chin, cheek to cheek), x0, y0, x1, y1.
    face = np.array([175.0, 60.0, 275.0, 185.0])
    box = boxes[0]
    inter = np.prod(np.clip(np.minimum(box[2:], face[2:]) - np.maximum(box[:2], face[:2]), 0, None))
    union = np.prod(box[2:] - box[:2]) + np.prod(face[2:] - face[:2]) - inter
    assert inter / union > 0.5


@pytest.mark.parametrize(
    ("kind", "name", "module", "weights"),
    [
        ("identity", "facenet", "facenet_pytorch", "facenet_vggface2"),
        ("identity", "torchreid", "torchreid", "torchreid_resnet50_market1501"),
        ("keypoint", "face_alignment", "face_alignment", "fan_2d"),
        ("keypoint", "openpifpaf", "openpifpaf", "openpifpaf_shufflenetv2k16"),
    ],
)
def test_missing_weights_stop_with_file_and_fetch_command(tmp_path, kind, name, module, weights):
    _need(module)
    build = build_identity_backend if kind == "identity" else build_keypoint_backend
    with pytest.raises(MissingWeightsError) as err:
        build(name, weights_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / REGISTRY[weights].filename) in message
    assert f"animbench weights fetch {weights}" in message and "\n" not in message


def test_corrupt_weights_file_is_refused(tmp_path):
    _need("facenet_pytorch")
    (tmp_path / REGISTRY["facenet_vggface2"].filename).write_bytes(b"truncated download")
    with pytest.raises(MissingWeightsError, match="corrupt"):
        build_identity_backend("facenet", weights_dir=tmp_path)
