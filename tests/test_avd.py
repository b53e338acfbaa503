"""AVD network: reference key names, shapes, encode/decode per method, training step and run."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
import torch

from methods.engine import checkpoints
from methods.engine.train_avd import avd_motion_step, resolve_params
from methods.models.avd import (
    AVDNetwork,
    avd_input_size,
    build_avd_network,
    load_avd_network,
    random_scale,
    revert_axis_swap,
    sizes_from_state_dict,
)
from methods.registry import build_model, list_methods
from tests.conftest import REPO, TINY_FOMM

DATA = Path(__file__).parent / "data"


pytestmark = pytest.mark.usefixtures("one_thread")


@cache
def method_config(method: str) -> dict:
    """The method's synthetic demo config (FOMM shrunk further, as in conftest)."""
    from methods.engine.config import load_method_config

    path = REPO / f"methods/configs/{method}/synthetic.yaml"
    if not path.is_file():
        pytest.skip(f"{method} has no synthetic.yaml config")
    return load_method_config(path, overrides=TINY_FOMM if method == "fomm" else None)


@cache
def method_model(method: str):
    torch.manual_seed(0)
    return build_model(copy.deepcopy(method_config(method)), with_losses=False).eval()


def frames(method: str, batch: int, seed: int) -> torch.Tensor:
    height, width, channels = method_config(method)["dataset_params"]["frame_shape"]
    return torch.rand(batch, channels, height, width, generator=torch.Generator().manual_seed(seed))


def encoded(method: str, batch: int = 2, seed: int = 0):
    model = method_model(method)
    with torch.no_grad():
        motion = model.encode(frames(method, batch, seed))
    try:
        return model, motion, model.avd_encode(motion)
    except NotImplementedError:
        pytest.xfail(f"{method} does not implement avd_encode yet")


def test_network_shapes_and_bad_input():
    net = AVDNetwork(60, id_bottle_size=32, pose_bottle_size=16)
    out = net(torch.randn(5, 60), torch.randn(5, 60))
    assert out.shape == (5, 60)
    assert net.decoder[0].in_features == 48
    with pytest.raises(ValueError, match=r"identity parameters must be \(B, 60\)"):
        net(torch.randn(5, 59), torch.randn(5, 60))
    assert sizes_from_state_dict(net.state_dict()) == net.sizes()


@pytest.mark.parametrize("reference", ["mraa", "tpsmm"])
def test_reference_state_dict_loads_strictly(reference):
    """The released checkpoints' avd_network entries (key names and shapes pinned from the
    reference code) load with strict=True, sized from the state_dict alone."""
    pinned = json.loads((DATA / f"avd_{reference}_state_dict.json").read_text())["avd_network"]
    state = {
        key: torch.zeros(shape, dtype=torch.long if key.endswith("num_batches_tracked") else torch.float32)
        for key, shape in pinned
    }
    net = load_avd_network(state, reference)
    assert [(k, list(v.shape)) for k, v in net.state_dict().items()] == [(k, s) for k, s in pinned]
    assert not net.training
    truncated = dict(state)
    del truncated["decoder.4.running_var"]
    with pytest.raises(ValueError, match="decoder.4.running_var"):
        load_avd_network(truncated, reference)
    foreign = {**state, "decoder.12.weight": torch.zeros(3)}
    with pytest.raises(ValueError, match="decoder.12.weight"):
        load_avd_network(foreign, reference)


@pytest.mark.parametrize("method", list_methods())
def test_encode_decode_round_trip(method):
    model, motion, params = encoded(method)
    assert params.ndim == 2 and params.shape[0] == 2
    assert avd_input_size(model) == params.shape[1]
    decoded = model.avd_decode(params, like=motion)
    torch.testing.assert_close(model.avd_encode(decoded), params, rtol=0, atol=1e-6)
    for key in ("value", "jacobian", "shift", "affine", "fg_kp"):
        if key in motion:
            torch.testing.assert_close(decoded[key], motion[key], rtol=0, atol=1e-6)


def test_random_scale_is_an_axis_scaling_shared_by_points_and_maps():
    motion = {"shift": torch.randn(64, 5, 2), "affine": torch.randn(64, 5, 2, 2), "heatmap": torch.randn(64, 5, 4, 4)}
    scaled = random_scale(motion, 0.25, torch.Generator().manual_seed(1))
    ratio = scaled["shift"] / motion["shift"]  # (B, K, 2): sx, sy per sample
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)
    assert ratio.min() >= 0.75 - 1e-6 and ratio.max() <= 1.25 + 1e-6
    assert ratio.max() - ratio.min() > 0.25  # actually random, not constant
    row_ratio = scaled["affine"] / motion["affine"]  # rows scale by (sx, sy)
    torch.testing.assert_close(row_ratio, ratio[..., None].expand_as(row_ratio), rtol=1e-4, atol=1e-5)
    assert scaled["heatmap"] is motion["heatmap"]
    with pytest.raises(KeyError, match="none of"):
        random_scale({"heatmap": torch.zeros(1)}, 0.25)


def test_revert_axis_swap_flips_regions_with_opposite_axes():
    pose = {"affine": torch.eye(2).repeat(1, 2, 1, 1)}
    identity = {"affine": torch.stack([torch.eye(2) * 2, -torch.eye(2)])[None], "shift": torch.zeros(1, 2, 2)}
    out = revert_axis_swap(identity, pose)
    torch.testing.assert_close(out["affine"], torch.stack([torch.eye(2) * 2, torch.eye(2)])[None])


@pytest.mark.parametrize("method", list_methods())
def test_training_step_lowers_the_loss_on_a_fixed_batch(method):
    model, _, _ = encoded(method)
    torch.manual_seed(0)
    net = build_avd_network(model, {"id_bottle_size": 16, "pose_bottle_size": 16})
    params = resolve_params(method_config(method), {"random_scale": 0.25})
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.999))
    with torch.no_grad():  # encoded once: the motion model is frozen, only AVD trains
        motion_id, motion_pose = model.encode(frames(method, 8, 1)), model.encode(frames(method, 8, 2))
    totals = []
    for step in range(25):
        losses = avd_motion_step(model, net, motion_id, motion_pose, params, torch.Generator().manual_seed(step))
        total = sum(losses.values())
        totals.append(total.item())
        total.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert all(torch.isfinite(torch.tensor(totals)))
    assert min(totals[-5:]) < 0.5 * totals[0], totals


def test_params_schema_names_the_bad_key():
    with pytest.raises(ValueError, match="train_avd_params.*batch_sise"):
        resolve_params(method_config("fomm"), {"batch_sise": 4})


def _tiny_checkpoint(tmp_path: Path, config: dict) -> Path:
    torch.manual_seed(0)
    model = build_model(config, with_losses=False)
    path = tmp_path / "run" / "checkpoint.pt"
    checkpoints.save(path, {**checkpoints.model_state(model), "epoch": 1, "animbench": {"config": config}})
    return path


AVD_TINY = {"num_epochs": 2, "num_repeats": 2, "batch_size": 4, "epoch_milestones": [1],
            "id_bottle_size": 8, "pose_bottle_size": 8}


def test_train_avd_cli_writes_a_loadable_checkpoint_and_resumes(tiny_dataset, tiny_fomm_config, tmp_path):
    from animbench.cli import main
    from methods.engine.train_avd import LOG_NAME, STATE_NAME, AVDOptions, train_avd

    ckpt = _tiny_checkpoint(tmp_path, tiny_fomm_config)
    argv = ["train-avd", "--checkpoint", str(ckpt), "--dataset", str(tiny_dataset),
            "--params", json.dumps(AVD_TINY), "--no-progress", "--threads", "1"]
    assert main(argv) == 0
    out = ckpt.with_name("checkpoint_avd.pt")
    payload = checkpoints.read(out)
    original = checkpoints.read(ckpt)
    for key in ("generator", "kp_detector"):
        for name, value in original[key].items():
            assert torch.equal(payload[key][name], value), f"motion model changed: {key}.{name}"
    assert payload["animbench"]["avd"]["id_bottle_size"] == 8
    assert len(pd.read_csv(out.parent / LOG_NAME)) == 2
    assert not (out.parent / STATE_NAME).exists()
    model, _ = checkpoints.load_model(out)
    assert isinstance(model.avd_network, AVDNetwork) and not model.avd_network.training

    # Killed after one epoch and restarted: the same weights as the uninterrupted run.
    resumed = tmp_path / "resumed" / "checkpoint_avd.pt"
    options = AVDOptions(ckpt, tiny_dataset, resumed, params=AVD_TINY, progress=False)
    assert train_avd(AVDOptions(**{**options.__dict__, "stop_after_epochs": 1})) == resumed.parent / STATE_NAME
    assert train_avd(options) == resumed
    again = checkpoints.read(resumed)["avd_network"]
    for name, value in payload["avd_network"].items():
        torch.testing.assert_close(again[name], value, rtol=0, atol=1e-6, msg=name)


def test_train_avd_resumes_mid_epoch_on_the_methods_trainer(tiny_dataset, tiny_fomm_config, tmp_path):
    # AVD training runs on the one trainer: a state saved after any step resumes exactly.
    from methods.engine.train_avd import LOG_NAME, STATE_NAME, AVDOptions, train_avd

    ckpt = _tiny_checkpoint(tmp_path, tiny_fomm_config)
    params = {**AVD_TINY, "num_repeats": 8}  # 2 identities x 8 = 16 pairs: four steps of 4 per epoch
    whole = AVDOptions(ckpt, tiny_dataset, tmp_path / "whole" / "avd.pt", params=params, progress=False)
    assert train_avd(whole) == whole.out
    broken = AVDOptions(ckpt, tiny_dataset, tmp_path / "broken" / "avd.pt", params=params, progress=False)
    assert train_avd(AVDOptions(**{**broken.__dict__, "stop_after_steps": 1})) == broken.out.parent / STATE_NAME
    assert train_avd(broken) == broken.out
    expected, resumed = checkpoints.read(whole.out), checkpoints.read(broken.out)
    for name, value in expected["avd_network"].items():
        torch.testing.assert_close(resumed["avd_network"][name], value, rtol=0, atol=1e-6, msg=name)
    logged = pd.read_csv(broken.out.parent / LOG_NAME)
    assert list(logged["steps"]) == [4, 4] and list(logged["lr_avd"]) == pytest.approx([1e-4, 1e-4])


def test_train_avd_batch_larger_than_dataset_is_a_clear_error(tiny_dataset, tiny_fomm_config, tmp_path):
    from methods.engine.train_avd import AVDOptions, train_avd

    ckpt = _tiny_checkpoint(tmp_path, tiny_fomm_config)
    with pytest.raises(ValueError, match=r"fewer than train_avd_params.batch_size \d+; raise train_avd_params.num_repeats"):
        train_avd(AVDOptions(ckpt, tiny_dataset, tmp_path / "avd.pt", params={"num_repeats": 1}, progress=False))
