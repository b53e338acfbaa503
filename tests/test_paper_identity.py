"""The papers' two identity evaluators (pose-evaluation's extract_body_id / extract_face_id):
metrics.backends.reid_baseline_identity and metrics.backends.openface_identity.

Their layouts are checked against the state_dict names and shapes of the reference
architectures (ft_net(751) at Person_reID_baseline_pytorch 2a5a656, netOpenFace at
OpenFacePytorch d002218), recorded in tests/data; their numbers against the reference code
itself by an out-of-tree parity script (docs/evaluators.md gives the figures). Here: the
per-frame batch statistics, the preprocessing, batching, loading and errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from data_prep.legacy_resize import skimage014_resize
from data_prep.weights import REGISTRY, MissingWeightsError
from metrics.backends import openface_identity as of
from metrics.backends import reid_baseline_identity as rb
from metrics.backends.base import BackendInfo, backend_weights

pytestmark = pytest.mark.usefixtures("one_thread")
DATA = Path(__file__).resolve().parent / "data"


def _frames(n: int, seed: int, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _close(a: np.ndarray, b: np.ndarray) -> None:
    # Batched and one-frame convolutions may take different CPU kernels (last-bit differences);
    # anything from other frames' statistics would be many orders of magnitude larger.
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * max(1.0, float(np.abs(b).max())))


@pytest.fixture(scope="module")
def reid_backend():
    torch.manual_seed(0)
    return rb.build_reid_baseline(pretrained=False, batch_size=3)


@pytest.fixture(scope="module")
def openface_backend():
    torch.manual_seed(0)
    return of.build_openface(pretrained=False, batch_size=3)


# ------------------------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    "pinned, key, build",
    [("reid_ft_net751_state_dict.json", "ft_net", lambda: rb.FtNet(751)),
     ("openface_nn4_small2_state_dict.json", "netOpenFace", of.OpenFaceNet)],
    ids=["ft_net", "netOpenFace"],
)
def test_state_dict_names_and_shapes_equal_the_reference_architecture(pinned, key, build):
    expected = [(name, shape) for name, shape in json.loads((DATA / pinned).read_text())[key]]
    ours = [(name, list(t.shape)) for name, t in build().state_dict().items()]
    assert ours == expected


def test_each_module_registers_its_backend_with_the_weights_it_loads():
    assert backend_weights("identity", "reid_baseline", {}) == ["reid_baseline_ft_net"] == [rb.WEIGHTS_NAME]
    assert backend_weights("identity", "openface", {}) == ["openface_nn4_small2"] == [of.WEIGHTS_NAME]
    for name in (rb.WEIGHTS_NAME, of.WEIGHTS_NAME):
        assert name in REGISTRY


# --------------------------------------------------------- body: training-mode batch norm


def test_per_frame_batch_norm_is_training_mode_batch_norm_on_each_frame_alone():
    torch.manual_seed(0)
    reference = nn.BatchNorm2d(8, eps=1e-5).train()
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.normal_()
        reference.running_mean.normal_()
        reference.running_var.uniform_(0.5, 2)
    ours = rb.PerFrameBatchNorm2d(8)
    ours.load_state_dict(reference.state_dict())
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    x = torch.randn(5, 8, 6, 4) * 3 + 1
    with torch.no_grad():
        one_by_one = torch.cat([reference(x[i : i + 1]) for i in range(len(x))])
        for mode in (True, False):
            torch.testing.assert_close(ours.train(mode)(x), one_by_one, rtol=1e-6, atol=1e-6)
    # the running statistics are neither read nor updated
    assert all(torch.equal(before[k], v) for k, v in ours.state_dict().items())


def test_feature_network_is_the_headless_resnet50_with_per_frame_statistics():
    net = rb.feature_network(rb.FtNet(751))
    assert isinstance(net.fc, nn.Sequential) and len(net.fc) == 0
    kinds = {type(m) for m in net.modules()}
    assert nn.BatchNorm2d not in kinds and rb.PerFrameBatchNorm2d in kinds
    assert not any(isinstance(m, nn.Dropout | nn.Linear) for m in net.modules())


def test_body_preprocessing_is_torchvisions_pil_pipeline_with_the_double_division():
    from torchvision import transforms

    pipeline = transforms.Compose([
        transforms.ToPILImage(),
        transforms.Resize((288, 144), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize([0.0, 0.0, 0.0], [255.0, 255.0, 255.0]),
        transforms.Normalize(rb.IMAGENET_MEAN, rb.IMAGENET_STD),
    ])
    frames = _frames(3, seed=1, size=48)
    ours = rb.preprocess(frames)
    assert ours.shape == (3, 3, 288, 144) and ours.dtype == torch.float32
    assert torch.equal(ours, torch.stack([pipeline(f) for f in frames]))
    # pixels end in [0, 1/255] before the ImageNet normalisation: all values near -mean/std
    expected = -torch.tensor(rb.IMAGENET_MEAN) / torch.tensor(rb.IMAGENET_STD)
    assert (ours - expected.view(1, 3, 1, 1)).abs().max() < 1 / 255 / 0.224 + 1e-6


def test_body_embeddings_do_not_depend_on_the_other_frames_of_the_batch(reid_backend):
    frames = _frames(3, seed=2)
    others = _frames(3, seed=3)
    mixed = np.concatenate([frames[:1], others[1:]])
    batched = reid_backend.embed(frames)
    assert batched.shape == (3, rb.FEATURE_DIM) and batched.dtype == np.float64
    one_by_one = np.concatenate([reid_backend.embed(f[None]) for f in frames])
    _close(batched, one_by_one)
    _close(reid_backend.embed(mixed)[0], batched[0])
    assert np.abs(batched[0] - batched[1]).max() > 1e-3  # and the frames do differ
    assert reid_backend.embed(frames[:0]).shape == (0, rb.FEATURE_DIM)
    assert not any(m.training for m in reid_backend.net.modules())


# ----------------------------------------------------------------------- face: OpenFace


def _lrn_reference(x: np.ndarray, size: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """The port's normalisation in closed form (float64): window sum, plus x_0^2 from channel
    size // 2 + 1 on."""
    squares = x**2
    channels, half = x.shape[1], size // 2
    s = np.stack([squares[:, max(0, c - half) : c + half + 1].sum(1) for c in range(channels)], 1)
    s[:, half + 1 :] += squares[:, :1]
    return x * (k + alpha / size * s) ** -beta


def test_cross_map_lrn_is_the_ports_window_with_channel_zero_kept():
    torch.manual_seed(0)
    x = torch.randn(2, 12, 3, 5) * 20
    ours = of.CrossMapLRN(5, 0.0001, 0.75)(x)
    expected = _lrn_reference(x.double().numpy(), 5, 0.0001, 0.75, 1.0)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=2e-6)
    # torch's LocalResponseNorm lacks the x_0 term: it differs where x_0 is large.
    probe = torch.ones(1, 8, 1, 1)
    probe[0, 0] = 100.0
    torch_lrn = nn.LocalResponseNorm(5, 0.0001, 0.75, 1.0)(probe)
    ours = of.CrossMapLRN(5, 0.0001, 0.75)(probe)
    torch.testing.assert_close(ours[:, :3], torch_lrn[:, :3])
    assert (torch_lrn[:, 3:] - ours[:, 3:]).min() > 0.1


def test_inception_pads_smaller_branches_centred():
    block = of.Inception(4, (3,), (1,), (2,), (3, 5, 1), nn.MaxPool2d(3, stride=2)).eval()
    y = block(torch.randn(1, 4, 9, 9))
    assert y.shape == (1, 2 + 5 + 1, 9, 9)
    pooled = y[0, 2:7]  # the pool branch: 4x4 -> padded 2 before, 3 after, per axis
    assert pooled[:, :2].abs().max() == 0 and pooled[:, 6:].abs().max() == 0
    assert pooled[:, :, :2].abs().max() == 0 and pooled[:, :, 6:].abs().max() == 0


def test_face_preprocessing_is_bgr_and_scikit_image_014_resize():
    frames = _frames(2, seed=4, size=40)
    frames[1] = 0
    frames[1, ..., 0] = 200  # pure red
    x = of.preprocess(frames)
    assert x.shape == (2, 3, 96, 96) and x.dtype == torch.float32
    expected = skimage014_resize(frames[0][..., ::-1], (96, 96)).transpose(2, 0, 1)
    assert torch.equal(x[0], torch.from_numpy(expected).float())
    assert x[1, :2].abs().max() == 0 and x[1, 2].max() > 0.7  # red arrives as the last channel


def test_face_embeddings_are_normalised_and_batch_independent(openface_backend):
    frames = _frames(4, seed=5, size=80)
    batched = openface_backend.embed(frames)
    assert batched.shape == (4, of.EMBEDDING_DIM) and batched.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-4)
    one_by_one = np.concatenate([openface_backend.embed(f[None]) for f in frames])
    _close(batched, one_by_one)
    assert openface_backend.embed(frames[:0]).shape == (0, of.EMBEDDING_DIM)
    assert not openface_backend.net.training


# --------------------------------------------------------------------- loading and errors


@pytest.mark.parametrize("module", [rb, of], ids=["reid_baseline", "openface"])
def test_frames_must_be_uint8_rgb(module, reid_backend, openface_backend):
    backend = reid_backend if module is rb else openface_backend
    for bad in (np.zeros((1, 8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8),
                np.zeros((1, 8, 8, 4), np.uint8)):
        with pytest.raises(ValueError, match=r"uint8 RGB of shape \(N, H, W, 3\)"):
            backend.embed(bad)


CASES = [
    (rb, rb.build_reid_baseline, lambda: rb.FtNet(751), rb.load_ft_net_state_dict),
    (of, of.build_openface, of.OpenFaceNet, of.load_openface_state_dict),
]
IDS = ["reid_baseline", "openface"]


@pytest.mark.parametrize("module, build, net, load", CASES, ids=IDS)
def test_missing_weights_stop_with_the_file_url_and_fetch_command(module, build, net, load, tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        build(weights_dir=tmp_path)
    message = str(err.value)
    entry = REGISTRY[module.WEIGHTS_NAME]
    assert str(tmp_path / entry.filename) in message and entry.url in message
    assert f"animbench weights fetch {module.WEIGHTS_NAME} --dir {tmp_path}" in message
    assert "\n" not in message


@pytest.mark.parametrize("module, build, net, load", CASES, ids=IDS)
def test_a_state_dict_with_a_wrong_key_or_shape_is_refused_naming_it(module, build, net, load):
    target = net()
    state = dict(net().state_dict())
    load(target, state)  # the layout itself loads
    renamed = dict(state)
    first = next(iter(renamed))
    renamed["module." + first] = renamed.pop(first)
    with pytest.raises(ValueError, match=rf"unexpected key 'module\.{first}'"):
        load(target, renamed)
    dropped = dict(state)
    last_weight = [k for k in dropped if k.endswith(".weight")][-1]
    del dropped[last_weight]
    with pytest.raises(ValueError, match=rf"missing key '{last_weight}'"):
        load(target, dropped)
    reshaped = dict(state)
    reshaped[last_weight] = torch.zeros(3)
    with pytest.raises(ValueError, match=rf"key '{last_weight}' has shape \(3,\)"):
        load(target, reshaped)


@pytest.mark.parametrize("module, build, net, load", CASES, ids=IDS)
def test_the_released_file_loads_strictly_and_its_digest_is_recorded(module, build, net, load, monkeypatch):
    """Files from before torch 0.4.1 carry no num_batches_tracked: those alone may be absent."""
    torch.manual_seed(1)
    released = {k: v for k, v in net().state_dict().items() if not k.endswith("num_batches_tracked")}
    released = {k: (v + torch.randn_like(v) if v.is_floating_point() else v) for k, v in released.items()}
    monkeypatch.setattr(module, "resolve_with_sha256", lambda name, weights_dir: (Path(name), "c" * 64))
    monkeypatch.setattr(module, "load_pickled", lambda name, path: released)
    backend = build(weights_dir="unused", batch_size=2)
    name = "reid_baseline" if module is rb else "openface"
    assert backend.info == BackendInfo(name, module.PACKAGE, module.VERSION, "c" * 64)
    loaded = backend.net.state_dict()
    key = "conv1.weight" if module is rb else "layer1.weight"
    assert torch.equal(loaded[key], released[("model." if module is rb else "") + key])


@pytest.mark.parametrize("module, build, net, load", CASES, ids=IDS)
def test_random_init_needs_no_weights_file_and_says_so(module, build, net, load, tmp_path):
    backend = build(weights_dir=tmp_path, pretrained=False)
    assert backend.info.weights_sha256 == "random-init"
    assert backend.info.package == module.PACKAGE and backend.info.version == module.VERSION
