"""The trainer: logs, checkpoints in the reference layout, exact resume after a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from methods.engine import checkpoints
from methods.engine.train import STATE_NAME, TrainOptions, losses_off, train
from tests.conftest import REPO, TINY_FOMM


def _weights(path: Path) -> dict[str, torch.Tensor]:
    payload = checkpoints.read(path)
    return {f"{net}.{k}": v for net in ("generator", "kp_detector") for k, v in payload[net].items()}


def test_train_writes_checkpoint_log_and_info(tiny_dataset, tiny_fomm_config, tmp_path):
    out = tmp_path / "run"
    path = train(tiny_fomm_config, TrainOptions(tiny_dataset, out, seed=1, progress=False, config_source="x.yaml"))
    payload = checkpoints.read(path)
    assert {"generator", "kp_detector", "optimizer_generator", "optimizer_kp_detector", "epoch"} <= set(payload)
    assert payload["epoch"] == 2
    assert payload["animbench"]["config"] == tiny_fomm_config
    log = pd.read_csv(out / "train_log.csv")
    assert list(log["epoch"]) == [1, 2]
    assert {"loss_perceptual", "loss_equivariance_value", "loss_equivariance_jacobian", "loss_total"} <= set(log.columns)
    # MultiStepLR milestone [1]: the second epoch runs at a tenth of the rate.
    assert log["lr_generator"].iloc[1] == pytest.approx(2e-5)
    info = json.loads((out / "run.json").read_text())
    assert info["perceptual_loss"] == "pixel_pyramid" and info["method_config"] == "x.yaml"
    weights = tiny_fomm_config["train_params"]["loss_weights"]
    assert info["losses_off"] == sorted(k for k, v in weights.items() if not any(v if isinstance(v, list) else [v]))
    assert not (out / STATE_NAME).exists()


def test_losses_off_names_terms_at_weight_zero_on_every_scale():
    params = {"loss_weights": {"perceptual": [0, 0], "keypoint_semantic": 0, "structure": 0.0, "bg": 10, "warp": [0, 1]}}
    assert losses_off(params) == ["keypoint_semantic", "perceptual", "structure"]
    assert losses_off({}) == []


def test_resume_matches_uninterrupted_run(tiny_dataset, tiny_fomm_config, tmp_path):
    full = train(tiny_fomm_config, TrainOptions(tiny_dataset, tmp_path / "full", seed=2, progress=False))
    options = TrainOptions(tiny_dataset, tmp_path / "split", seed=2, progress=False, stop_after_epochs=1)
    state = train(tiny_fomm_config, options)
    assert state.name == STATE_NAME and checkpoints.read(state)["epoch"] == 1
    resumed = train(tiny_fomm_config, TrainOptions(tiny_dataset, tmp_path / "split", seed=2, progress=False))
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert pd.read_csv(tmp_path / "split" / "train_log.csv")["epoch"].tolist() == [1, 2]


def test_state_of_another_config_is_not_resumed(tiny_dataset, tiny_fomm_config, tmp_path):
    out = tmp_path / "run"
    train(tiny_fomm_config, TrainOptions(tiny_dataset, out, seed=0, progress=False, stop_after_epochs=1))
    other = dict(tiny_fomm_config, train_params=dict(tiny_fomm_config["train_params"], num_epochs=1))
    train(other, TrainOptions(tiny_dataset, out, seed=0, progress=False))
    log = pd.read_csv(out / "train_log.csv")
    assert log["epoch"].tolist() == [1]  # started afresh rather than continuing the other run


def test_batch_larger_than_epoch_is_a_clear_error(tiny_dataset, tiny_fomm_config, tmp_path):
    tiny_fomm_config["train_params"]["batch_size"] = 1000
    with pytest.raises(ValueError, match="batch_size"):
        train(tiny_fomm_config, TrainOptions(tiny_dataset, tmp_path / "run", progress=False))


@pytest.mark.slow
def test_kill_9_then_rerun_ends_with_same_weights(tiny_dataset, tmp_path):
    """A real crash: SIGKILL the CLI mid-training, rerun it, compare with an uninterrupted run."""
    overrides = json.dumps({**TINY_FOMM, "train_params.num_epochs": 4})

    def command(out: Path) -> list[str]:
        return [
            sys.executable, "-m", "animbench.cli", "train",
            "--method-config", str(REPO / "methods/configs/fomm/synthetic.yaml"),
            "--overrides", overrides, "--dataset", str(tiny_dataset), "--out", str(out),
            "--seed", "5", "--threads", "1", "--no-progress",
        ]

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(command(tmp_path / "full"), check=True, env=env, cwd=REPO)
    victim = subprocess.Popen(command(tmp_path / "crash"), env=env, cwd=REPO)
    state = tmp_path / "crash" / STATE_NAME
    deadline = time.monotonic() + 300
    while not state.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert state.exists(), "training never wrote its resume state"
    assert checkpoints.read(state)["epoch"] < 4
    assert not (tmp_path / "crash" / "checkpoint.pt").exists()
    subprocess.run(command(tmp_path / "crash"), check=True, env=env, cwd=REPO)
    a, b = _weights(tmp_path / "full" / "checkpoint.pt"), _weights(tmp_path / "crash" / "checkpoint.pt")
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_yaml_syntax_error_is_one_line(tiny_dataset, tmp_path, capsys):
    from animbench.cli import main

    broken = tmp_path / "broken.yaml"
    broken.write_text((REPO / "methods/configs/fomm/synthetic.yaml").read_text().replace("num_kp: 10", "num_kp: [10"))
    code = main(["train", "--method-config", str(broken), "--dataset", str(tiny_dataset), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert str(broken) in err and "YAML syntax error at line" in err


def test_resolve_device():
    from data_prep.devices import DeviceError, resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available.*--device cpu or auto"):
            resolve_device("cuda")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_and_channels_last_train(tiny_dataset, tiny_fomm_config, tmp_path, precision):
    """The autocast (and, for fp16, GradScaler) path trains to finite weights; run.json says so."""
    tiny_fomm_config["train_params"].update(mixed_precision=precision, channels_last=True, num_epochs=1)
    path = train(tiny_fomm_config, TrainOptions(tiny_dataset, tmp_path / "run", device="cpu", progress=False))
    assert all(torch.isfinite(v).all() for v in _weights(path).values())
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["mixed_precision"] == precision and info["channels_last"] is True


def test_weight_decay_reaches_every_optimizer():
    from methods.engine.config import load_method_config
    from methods.engine.train import _build_optimizers
    from methods.registry import build_model

    config = load_method_config(REPO / "methods/configs/tpsmm/taichi.yaml")
    assert config["train_params"]["weight_decay"] == pytest.approx(1e-4)  # the reference's value
    model = build_model(config, with_losses=False)
    optimizers, _ = _build_optimizers(model, config["train_params"])
    assert all(g["weight_decay"] == pytest.approx(1e-4) for o in optimizers.values() for g in o.param_groups)
    del config["train_params"]["weight_decay"]
    optimizers, _ = _build_optimizers(model, config["train_params"])
    assert all(g["weight_decay"] == 0 for o in optimizers.values() for g in o.param_groups)
