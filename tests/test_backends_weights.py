"""The evaluator backends' weights handling, module by module
(metrics.backends.face_alignment_landmarks, .facenet_identity, .torchreid_identity).

Without its weights file a backend stops with one line naming the file and the command that
fetches it; with a file it records the file's SHA-256 beside every number. The packages'
networks are replaced by small stand-ins (``_fake_packages``) so that these checks run
whether or not face-alignment, facenet-pytorch and torchreid are installed, and fast; the last
tests repeat the missing-file check with the real packages where they are installed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from data_prep.io import file_sha256
from data_prep.weights import REGISTRY, MissingWeightsError
from metrics.backends import face_alignment_landmarks as fa
from metrics.backends import facenet_identity as fn
from metrics.backends import torchreid_identity as tr
from metrics.backends.base import BackendInfo, backend_weights

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------ stand-in packages


class TinyNet(nn.Module):
    """Stands in for every package network: a few parameters, a pooled linear output."""

    def __init__(self, *_, outputs: int = 4, **__) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 2, 1)
        self.classifier = nn.Linear(2, outputs)

    def forward(self, x):
        return self.features(x).mean(dim=(2, 3))


def _module(monkeypatch, name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)
    return module


@pytest.fixture
def fake_packages(monkeypatch):
    """Fake facenet_pytorch, torchreid and face_alignment modules with tiny networks; records
    what the builders construct."""
    built: dict[str, object] = {}

    def inception(pretrained=None, classify=False):
        assert pretrained is None  # never facenet-pytorch's own download
        built["facenet"] = net = TinyNet()
        return net

    def reid_model(name, num_classes, loss, pretrained, use_gpu):
        assert (name, pretrained) == ("resnet50", False)  # no ImageNet download either
        built["torchreid"] = net = TinyNet(outputs=num_classes)
        return net

    _module(monkeypatch, "facenet_pytorch", InceptionResnetV1=inception)
    for name in ("torchreid", "torchreid.reid"):
        _module(monkeypatch, name)
    _module(monkeypatch, "torchreid.reid.models", build_model=reid_model)

    class FaceDetector:
        def __init__(self, device, verbose):
            self.device = device

    class FaceAlignment:
        pass

    class SFDDetector(FaceDetector):
        pass

    for name in ("face_alignment", "face_alignment.detection", "face_alignment.detection.sfd"):
        _module(monkeypatch, name)
    _module(monkeypatch, "face_alignment.api", FaceAlignment=FaceAlignment,
            LandmarksType=types.SimpleNamespace(TWO_D="2D"), NetworkSize=types.SimpleNamespace(LARGE=4))
    _module(monkeypatch, "face_alignment.detection.core", FaceDetector=FaceDetector)
    _module(monkeypatch, "face_alignment.detection.sfd.net_s3fd", s3fd=lambda: TinyNet())
    _module(monkeypatch, "face_alignment.detection.sfd.sfd_detector", SFDDetector=SFDDetector)
    _module(monkeypatch, "face_alignment.models", FAN=lambda size: TinyNet())
    real_version = importlib.metadata.version
    fake = {"face-alignment": "1.5.0", "facenet-pytorch": "2.5.3", "torchreid": "0.2.5"}
    monkeypatch.setattr(importlib.metadata, "version", lambda n: fake.get(n) or real_version(n))
    return built


BUILDERS = [
    (fn.build_facenet, fn.WEIGHTS_NAME),
    (tr.build_torchreid, tr.WEIGHTS_NAME),
    (fa.build_face_alignment, fa.FAN_WEIGHTS),
]


def _assert_names_file_and_command(message: str, tmp_path, weights: str) -> None:
    assert str(tmp_path / REGISTRY[weights].filename) in message
    assert f"animbench weights fetch {weights} --dir {tmp_path}" in message
    assert REGISTRY[weights].url in message and "\n" not in message


@pytest.mark.parametrize("build, weights", BUILDERS, ids=lambda v: getattr(v, "__name__", v))
def test_missing_weights_stop_with_the_file_and_the_fetch_command(fake_packages, tmp_path, build, weights):
    with pytest.raises(MissingWeightsError) as err:
        build(weights_dir=tmp_path)
    _assert_names_file_and_command(str(err.value), tmp_path, weights)


@pytest.mark.parametrize("build, weights", BUILDERS, ids=lambda v: getattr(v, "__name__", v))
def test_random_init_needs_no_weights_file_and_says_so(fake_packages, tmp_path, build, weights):
    backend = build(weights_dir=tmp_path, pretrained=False)
    assert backend.info.weights_sha256 == "random-init"
    assert backend.info.cache_key().startswith(f"{backend.info.name}-{backend.info.version}-random-init")


def test_each_module_registers_its_backend_with_the_weights_it_loads():
    assert backend_weights("identity", "facenet", {}) == ["facenet_vggface2"] == [fn.WEIGHTS_NAME]
    assert backend_weights("identity", "torchreid", {}) == [tr.WEIGHTS_NAME]
    assert backend_weights("keypoint", "face_alignment", {}) == ["fan_2d", "sfd"]
    for name in (fn.WEIGHTS_NAME, tr.WEIGHTS_NAME, fa.FAN_WEIGHTS, fa.SFD_WEIGHTS):
        assert name in REGISTRY


def test_a_checked_file_of_the_wrong_bytes_is_refused(fake_packages, tmp_path):
    (tmp_path / REGISTRY[fn.WEIGHTS_NAME].filename).write_bytes(b"an html error page")
    with pytest.raises(MissingWeightsError, match="corrupt") as err:
        fn.build_facenet(weights_dir=tmp_path)
    _assert_names_file_and_command(str(err.value), tmp_path, fn.WEIGHTS_NAME)


def test_face_alignment_names_the_detector_file_too_and_keys_caches_by_both(
    fake_packages, tmp_path, monkeypatch
):
    """FAN present (its checksum accepted here), SFD missing: the error names SFD's file. With
    both, one digest of the pair keys the caches, so either file changing invalidates them."""
    real = fa.resolve_with_sha256
    fan_file = tmp_path / REGISTRY[fa.FAN_WEIGHTS].filename
    torch.save(TinyNet().state_dict(), fan_file)

    def resolve(name, weights_dir):
        if name == fa.FAN_WEIGHTS:
            return fan_file, "a" * 64
        return real(name, weights_dir)

    monkeypatch.setattr(fa, "resolve_with_sha256", resolve)
    with pytest.raises(MissingWeightsError) as err:
        fa.build_face_alignment(weights_dir=tmp_path)
    _assert_names_file_and_command(str(err.value), tmp_path, fa.SFD_WEIGHTS)

    sfd_file = tmp_path / REGISTRY[fa.SFD_WEIGHTS].filename
    torch.save(TinyNet().state_dict(), sfd_file)
    monkeypatch.setattr(fa, "resolve_with_sha256", lambda name, weights_dir: (
        (fan_file, "a" * 64) if name == fa.FAN_WEIGHTS else (sfd_file, "b" * 64)))
    backend = fa.build_face_alignment(weights_dir=tmp_path, face_threshold=0.7, batch_size=3)
    assert backend.weights_files == {"fan_2d": "a" * 64, "sfd": "b" * 64}
    pair = hashlib.sha256(f"{'a' * 64}+{'b' * 64}".encode()).hexdigest()
    assert backend.info == BackendInfo("face_alignment", "face-alignment", "1.5.0", pair)
    assert backend.aligner.face_detector.filter_threshold == 0.7 and backend.batch_size == 3


def test_torchreid_loads_an_unpublished_checksum_file_and_records_its_digest(fake_packages, tmp_path):
    """torchreid's model zoo publishes no checksum: the file is loaded (without its classifier,
    ``module.`` prefixes stripped) and its SHA-256 is what the results record."""
    torch.manual_seed(1)
    trained = TinyNet(outputs=10)  # another classifier size: it is dropped
    path = tmp_path / REGISTRY[tr.WEIGHTS_NAME].filename
    torch.save({"state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()},
                "epoch": 60}, path)
    backend = tr.build_torchreid(weights_dir=tmp_path)
    assert backend.info.weights_sha256 == file_sha256(path)
    assert backend.info == BackendInfo("torchreid", "torchreid", "0.2.5", file_sha256(path))
    net = fake_packages["torchreid"]
    assert torch.equal(net.features.weight, trained.features.weight)
    assert net.classifier.out_features == tr.MARKET1501_TRAIN_IDS and not net.training


def test_load_reid_state_dict_refuses_what_is_not_a_matching_checkpoint(tmp_path):
    net = TinyNet()
    bare = tmp_path / "bare.pt"
    torch.save(TinyNet().state_dict(), bare)  # a bare state_dict is accepted too
    tr.load_reid_state_dict(net, bare)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"conv.weight": torch.zeros(1)}}, other)
    with pytest.raises(ValueError, match=r"other\.pt: does not match torchreid's resnet50"):
        tr.load_reid_state_dict(net, other)
    junk = tmp_path / "junk.pt"
    torch.save([1, 2, 3], junk)
    with pytest.raises(ValueError, match="not a torchreid checkpoint"):
        tr.load_reid_state_dict(net, junk)


def test_facenet_loads_the_released_file_without_its_classifier(fake_packages, tmp_path, monkeypatch):
    path = tmp_path / REGISTRY[fn.WEIGHTS_NAME].filename
    state = TinyNet().state_dict()
    state["logits.weight"] = torch.zeros(8631, 2)  # VGGFace2's identities: not used
    torch.save(state, path)
    monkeypatch.setattr(fn, "resolve_with_sha256", lambda name, weights_dir: (path, "c" * 64))
    backend = fn.build_facenet(weights_dir=tmp_path, image_size=16)
    assert backend.info == BackendInfo("facenet", "facenet-pytorch", "2.5.3", "c" * 64)
    assert torch.equal(fake_packages["facenet"].features.weight, state["features.weight"])


# --------------------------------------------------------------------- frames and embeddings


@pytest.mark.parametrize("module", [fa, fn, tr], ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_frames_must_be_uint8_rgb(module):
    for bad in (np.zeros((1, 8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8),
                np.zeros((1, 8, 8, 4), np.uint8)):
        with pytest.raises(ValueError, match=r"uint8 RGB of shape \(N, H, W, 3\)"):
            module._frames_to_tensor(bad)
    frames = np.full((2, 5, 4, 3), 255, np.uint8)
    tensor = module._frames_to_tensor(frames)
    assert tensor.shape == (2, 3, 5, 4) and tensor.dtype == torch.float32
    # torchreid reads 0..1; face-alignment and facenet the 0..255 pixel scale.
    assert float(tensor.max()) == (1.0 if module is tr else 255.0)


class Recorder(nn.Module):
    """Returns each image's mean per channel and remembers the input sizes it saw."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim, self.sizes = dim, []

    def forward(self, x):
        self.sizes.append(tuple(x.shape))
        return x.mean(dim=(2, 3)).repeat(1, self.dim // 3 + 1)[:, : self.dim]


def test_facenet_embed_resizes_standardises_and_batches():
    net = Recorder(512)
    backend = fn.FacenetIdentity(net, BackendInfo("facenet", "p", "v", "s"), "cpu", 2, 16)
    frames = np.full((3, 20, 12, 3), 255, np.uint8)
    emb = backend.embed(frames)
    assert emb.shape == (3, 512) and emb.dtype == np.float64
    assert net.sizes == [(2, 3, 16, 16), (1, 3, 16, 16)]
    np.testing.assert_allclose(emb, (255 - 127.5) / 128, rtol=1e-6)  # fixed_image_standardization
    assert backend.embed(frames[:0]).shape == (0, 512)


def test_torchreid_embed_resizes_to_height_by_width_with_imagenet_normalisation():
    net = Recorder(2048)
    backend = tr.TorchreidIdentity(net, BackendInfo("torchreid", "p", "v", "s"), "cpu", 4, (12, 6))
    frames = np.zeros((2, 30, 20, 3), np.uint8)
    emb = backend.embed(frames)
    assert emb.shape == (2, 2048) and net.sizes == [(2, 3, 12, 6)]
    expected = -np.array(tr.IMAGENET_MEAN) / np.array(tr.IMAGENET_STD)
    np.testing.assert_allclose(emb[0, :3], expected, rtol=1e-6)
    assert backend.embed(frames[:0]).shape == (0, 2048)


def test_face_alignment_detect_takes_the_first_face_and_leaves_faceless_frames_nan():
    first, second = np.array([1.0, 1.0, 9.0, 9.0, 0.9]), np.array([0.0, 0.0, 4.0, 4.0, 0.8])
    seen = []

    class Detector:
        def detect_from_batch(self, batch):
            seen.append(len(batch))
            return [[first, second] if i % 2 == 0 else [] for i in range(len(batch))]

    class Aligner:
        face_detector = Detector()

        def get_landmarks_from_image(self, image, detected_faces):
            assert image.shape == (10, 10, 3) and len(detected_faces) == 1
            box = detected_faces[0]
            return [np.tile(box[:2], (68, 1)) + np.arange(68)[:, None]]

    backend = fa.FaceAlignmentLandmarks(Aligner(), BackendInfo("face_alignment", "p", "v", "s"), 2)
    points = backend.detect(np.zeros((3, 10, 10, 3), np.uint8))
    assert points.shape == (3, 68, 2) and seen == [2, 1]
    np.testing.assert_array_equal(points[0], np.tile(first[:2], (68, 1)) + np.arange(68)[:, None])
    assert np.isnan(points[1]).all()  # batch 1, frame 2: no face
    assert np.isfinite(points[2]).all()  # next batch starts again at an even index
    assert fa.FaceAlignmentLandmarks.num_joints == fa.NUM_LANDMARKS == 68


# ------------------------------------------------------------------- with the real packages


REAL = [
    ("facenet_pytorch", fn.build_facenet, fn.WEIGHTS_NAME),
    ("torchreid", tr.build_torchreid, tr.WEIGHTS_NAME),
    ("face_alignment", fa.build_face_alignment, fa.FAN_WEIGHTS),
]


@pytest.mark.parametrize("package, build, weights", REAL, ids=[r[0] for r in REAL])
def test_real_package_builders_stop_at_a_missing_weights_file(tmp_path, package, build, weights):
    pytest.importorskip(package, reason=f"{package} not installed (workflow/scripts/install_evaluators.sh)")
    with pytest.raises(MissingWeightsError) as err:
        build(weights_dir=tmp_path)
    _assert_names_file_and_command(str(err.value), tmp_path, weights)
    assert list(tmp_path.iterdir()) == []  # nothing downloaded behind the user's back
