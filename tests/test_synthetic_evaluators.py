"""The synthetic dataset's evaluators: shapes, loading errors, and their validation targets."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from metrics.backends import build_identity_backend, build_keypoint_backend, list_backends
from metrics.backends.synthetic import IdentityNet, KeypointNet, _to_tensor, for_inference
from metrics.protocols import PROTOCOLS_FILE, get_protocol, load_protocols
from metrics.train_evaluators import (
    check_settings,
    load_split,
    override,
    shift,
    train_evaluators,
)


def test_backends_are_registered():
    backends = list_backends()
    assert "synthetic" in backends["keypoint"] and "synthetic" in backends["identity"]


def test_missing_or_foreign_weights_name_the_file_and_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="keypoints.pt is missing.*animbench train-evaluators"):
        build_keypoint_backend("synthetic", weights_dir=tmp_path)
    (tmp_path / "identity.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="identity.pt cannot be loaded"):
        build_identity_backend("synthetic", weights_dir=tmp_path)


def test_soft_argmax_coordinates_are_input_pixels():
    net = KeypointNet(num_joints=2, width=4).eval()
    with torch.no_grad():
        for p in net.heatmap.parameters():
            p.zero_()  # flat heatmaps: soft-argmax = the centre of the frame
        coords, _ = net(torch.rand(1, 3, 32, 48))
    np.testing.assert_allclose(coords[0].numpy(), [[24.0, 16.0]] * 2, atol=1e-4)


def test_inference_nets_fold_batchnorm_without_changing_outputs():
    torch.manual_seed(0)
    for net in (KeypointNet(num_joints=3, width=4), IdentityNet(dim=8, width=4)):
        for module in net.modules():  # trained-looking statistics, not the identity map
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.3, 0.3)
        reference = copy.deepcopy(net).eval()
        fast = for_inference(net)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
        frames = np.random.default_rng(0).integers(0, 256, (3, 24, 20, 3), dtype=np.uint8)
        x = _to_tensor(frames, "cpu")
        np.testing.assert_allclose(x.numpy(), frames.transpose(0, 3, 1, 2) / 255.0, atol=1e-6)
        with torch.no_grad():
            for a, b in zip(torch.utils._pytree.tree_leaves(reference(x.contiguous())), torch.utils._pytree.tree_leaves(fast(x)), strict=True):
                np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-4)


def test_shift_moves_content_by_whole_pixels():
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 2, 3] = 1
    moved = shift(image, torch.tensor([[2.0, 1.0]]))
    assert moved[0, 0, 3, 5] == pytest.approx(1.0)


def test_protocol_settings_are_the_trainer_settings(tmp_path):
    # protocols.yaml carries the demo settings; the schema defines every key the trainer needs.
    settings = get_protocol("synthetic").trained_evaluators
    check_settings(settings)  # complete: the trainer has no defaults of its own
    with pytest.raises(KeyError, match="at keypoint: 'lr' is a required property"):
        check_settings({**settings, "keypoint": {k: v for k, v in settings["keypoint"].items() if k != "lr"}})
    with pytest.raises(KeyError, match="at identity.steps: 'x' is not of type 'integer'"):
        check_settings({**settings, "identity": {**settings["identity"], "steps": "x"}})
    with pytest.raises(KeyError, match="unknown evaluator training setting 'steps'"):
        override(settings, {"steps": 3})
    # the same schema rejects a protocols file with an incomplete section when it loads
    text = PROTOCOLS_FILE.read_text()
    broken = tmp_path / "protocols.yaml"
    broken.write_text(text.replace("dim: 64, ", "", 1))
    with pytest.raises(ValueError, match="trained_evaluators/identity.*'dim' is a required property"):
        load_protocols(broken)


def test_load_split_matches_ground_truth(tiny_dataset):
    split = load_split(tiny_dataset, "test")
    n = len(split["frames"])
    assert split["joints"].shape == (n, 15, 2) and split["visible"].shape == (n, 15)
    assert split["frames"].dtype == np.uint8 and len(np.unique(split["video"])) == 2


def test_retraining_is_skipped_when_up_to_date_and_backends_return_nan_for_invisible(tiny_dataset, tmp_path):
    tiny = {"keypoint": {"steps": 2, "batch_size": 2}, "identity": {"steps": 2, "batch_size": 2}}
    settings = override(get_protocol("synthetic").trained_evaluators, tiny)
    first = train_evaluators(tiny_dataset, tmp_path, settings, progress=False)
    mtime = (tmp_path / "keypoints.pt").stat().st_mtime_ns
    again = train_evaluators(tiny_dataset, tmp_path, settings, progress=False)
    assert again["keypoint"]["weights_sha256"] == first["keypoint"]["weights_sha256"]
    assert (tmp_path / "keypoints.pt").stat().st_mtime_ns == mtime
    keypoints = build_keypoint_backend("synthetic", weights_dir=tmp_path)
    frames = load_split(tiny_dataset, "test")["frames"][:3]
    with torch.no_grad():
        keypoints.net.visibility.bias.fill_(-100.0)  # every joint predicted invisible
    assert np.isnan(keypoints.detect(frames)).all()
    embedding = build_identity_backend("synthetic", weights_dir=tmp_path).embed(frames)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, rtol=1e-5)
    assert keypoints.info.weights_sha256 == first["keypoint"]["weights_sha256"]


@pytest.mark.slow
def test_evaluators_reach_their_targets_on_the_demo_dataset(tmp_path):
    """The demo dataset (`animbench prepare synthetic`) and the protocol's own settings."""
    from data_prep.synthetic import generate

    torch.set_num_threads(2)
    dataset = generate({}, tmp_path / "synthetic")
    record = train_evaluators(dataset, tmp_path / "evaluators", get_protocol("synthetic").trained_evaluators, progress=False)
    targets = record["keypoint"]["targets"]
    assert record["keypoint"]["keypoint_error_px"] <= targets["keypoint_error_px"], record["keypoint"]
    assert record["keypoint"]["visibility_accuracy"] >= targets["visibility_accuracy"], record["keypoint"]
    assert record["identity"]["identity_top1"] >= targets["identity_top1"], record["identity"]
    # Embeddings separate identities: same-identity AED well below other-identity AED.
    assert record["identity"]["aed_same_identity"] < 0.5 * record["identity"]["aed_other_identity"]
