"""Mid-epoch resume, pre-emption signals, stale temporaries, divergence and byte-identical output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from animbench.cli import main
from methods.engine import checkpoints
from methods.engine.train import (
    STATE_NAME,
    EpochBatches,
    TrainingDiverged,
    TrainOptions,
    _code_fingerprint,
    _non_finite,
    train,
)
from methods.registry import build_model
from tests.conftest import REPO, TINY_FOMM


def _weights(path: Path) -> dict[str, torch.Tensor]:
    payload = checkpoints.read(path)
    return {f"{net}.{k}": v for net in ("generator", "kp_detector") for k, v in payload[net].items()}


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.fixture(scope="module", autouse=True)
def frozen_code_fingerprint():
    """Pin the code hash: in a shared working tree another edit between two runs of one test
    would otherwise change the fingerprint stored in the checkpoint (and drop the resume state)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("methods.engine.train._code_fingerprint", lambda: "test-code")
        yield


@pytest.fixture(scope="module")
def uninterrupted(frozen_code_fingerprint, tiny_dataset, tmp_path_factory) -> Path:
    """The tiny FOMM run (2 epochs of 2 steps, seed 2) trained in one go."""
    from methods.engine.config import load_method_config

    config = load_method_config(REPO / "methods/configs/fomm/synthetic.yaml", overrides=TINY_FOMM)
    out = tmp_path_factory.mktemp("uninterrupted")
    return train(config, TrainOptions(tiny_dataset, out, seed=2, device="cpu", progress=False))


def test_epoch_batches_split_global_batches_and_skip_done_steps():
    full = list(EpochBatches(10, 4, seed=3, epoch=1))
    assert len(full) == 2 and all(len(b) == 4 for b in full)  # the incomplete batch is dropped
    assert list(EpochBatches(10, 4, seed=3, epoch=1, start=1)) == full[1:]
    halves = [list(EpochBatches(10, 4, seed=3, epoch=1, rank=r, world_size=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves, strict=True)] == full
    assert list(EpochBatches(10, 4, seed=3, epoch=2)) != full  # a new shuffle every epoch
    with pytest.raises(ValueError, match="divide evenly over 3 processes"):
        EpochBatches(10, 4, seed=3, epoch=1, world_size=3)


def test_mid_epoch_stop_resumes_to_identical_bytes(tiny_dataset, tiny_fomm_config, uninterrupted, tmp_path):
    """Stopped after 3 of 4 steps (mid epoch 2) and rerun: same weights, same checkpoint bytes."""
    out = tmp_path / "split"
    state = train(tiny_fomm_config, TrainOptions(tiny_dataset, out, seed=2, device="cpu", progress=False, stop_after_steps=3))
    saved = checkpoints.read(state)
    assert (saved["epoch"], saved["step"]) == (1, 1)  # epoch 2 (0-based 1), one step into it
    # A write killed mid-way leaves a hidden temporary: the next run deletes it.
    stale = out / ".checkpoint.pt.k1ll3d.tmp"
    stale.write_bytes(b"\0" * 1000)
    final = train(tiny_fomm_config, TrainOptions(tiny_dataset, out, seed=2, device="cpu", progress=False))
    assert not stale.exists()
    _assert_same_weights(uninterrupted, final)
    # Same inputs, same bytes: downstream steps keyed on the checkpoint hash stay valid.
    assert final.read_bytes() == uninterrupted.read_bytes()
    assert json.loads((out / "run.json").read_text())["device"] == "cpu"


def test_huge_learning_rate_stops_with_epoch_and_step(tiny_dataset, tiny_fomm_config, tmp_path):
    params = tiny_fomm_config["train_params"]
    params["lr_generator"] = params["lr_kp_detector"] = 1e8
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 1, step \d") as info:
        train(tiny_fomm_config, TrainOptions(tiny_dataset, out, device="cpu", progress=False))
    assert "\n" not in str(info.value) and "lr" in str(info.value)
    assert not (out / "checkpoint.pt").exists()
    if (out / STATE_NAME).exists():  # whatever was saved is finite
        assert all(torch.isfinite(v).all() for v in _weights(out / STATE_NAME).values())


def test_non_finite_buffer_is_found(tiny_fomm_config):
    model = build_model(tiny_fomm_config)
    assert _non_finite(model) == []
    norm = next(m for m in model.generator.modules() if isinstance(m, torch.nn.BatchNorm2d))
    norm.running_var.fill_(float("inf"))
    assert len(_non_finite(model)) == 1 and _non_finite(model)[0].endswith("running_var")


def test_cli_reports_divergence_in_one_line(tiny_dataset, tmp_path, capsys):
    overrides = {**TINY_FOMM, "train_params.lr_generator": 1e20, "train_params.lr_kp_detector": 1e20}
    code = main([
        "train", "--method-config", str(REPO / "methods/configs/fomm/synthetic.yaml"),
        "--overrides", json.dumps(overrides), "--dataset", str(tiny_dataset),
        "--out", str(tmp_path / "run"), "--device", "cpu", "--no-progress",
    ])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "diverged at epoch 1" in err and "Traceback" not in err


@pytest.mark.slow
def test_kill_9_mid_epoch_and_sigterm_then_rerun_end_with_same_weights(tiny_dataset, tmp_path):
    """Real crashes: SIGKILL mid-epoch, then SIGTERM (SLURM pre-emption) on the rerun; a third
    run finishes with the weights and bytes of an uninterrupted run."""
    overrides = json.dumps({
        **TINY_FOMM, "train_params.num_epochs": 3, "train_params.num_repeats": 4,
        "train_params.save_state_every_steps": 1,
    })

    def command(out: Path) -> list[str]:
        return [
            sys.executable, "-m", "animbench.cli", "-v", "train",
            "--method-config", str(REPO / "methods/configs/fomm/synthetic.yaml"),
            "--overrides", overrides, "--dataset", str(tiny_dataset), "--out", str(out),
            "--seed", "5", "--threads", "1", "--no-progress", "--device", "cpu",
        ]

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code_at_start = _code_fingerprint()
    subprocess.run(command(tmp_path / "full"), check=True, env=env, cwd=REPO, capture_output=True)
    state = tmp_path / "crash" / STATE_NAME

    def wait_for_state(process: subprocess.Popen, newer_than: float = 0.0) -> tuple[int, int]:
        """Position of the first state written after ``newer_than`` that lies inside an epoch."""
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            if state.exists() and state.stat().st_mtime > newer_than:
                try:
                    saved = checkpoints.read(state)
                except checkpoints.CheckpointError:
                    continue  # replaced while we read it
                if saved["step"] > 0:
                    return saved["epoch"], saved["step"]
            time.sleep(0.02)
        raise AssertionError(f"no mid-epoch state appeared (exit {process.poll()})")

    victim = subprocess.Popen(command(tmp_path / "crash"), env=env, cwd=REPO, stderr=subprocess.PIPE)
    wait_for_state(victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "crash" / "checkpoint.pt").exists()
    killed_at = checkpoints.read(state)
    killed_mtime = state.stat().st_mtime

    preempted = subprocess.Popen(command(tmp_path / "crash"), env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    wait_for_state(preempted, newer_than=killed_mtime)
    preempted.send_signal(signal.SIGTERM)
    _, err = preempted.communicate(timeout=300)
    assert f"resuming {tmp_path / 'crash'} at epoch {killed_at['epoch'] + 1}, step {killed_at['step']}" in err
    assert preempted.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "re-run the same command" in err
    assert "Traceback" not in err
    after_term = checkpoints.read(state)
    assert (after_term["epoch"], after_term["step"]) > (killed_at["epoch"], killed_at["step"])

    subprocess.run(command(tmp_path / "crash"), check=True, env=env, cwd=REPO, capture_output=True)
    _assert_same_weights(tmp_path / "full" / "checkpoint.pt", tmp_path / "crash" / "checkpoint.pt")
    if _code_fingerprint() == code_at_start:  # the checkpoint records it: an edit meanwhile changes bytes
        assert (tmp_path / "full" / "checkpoint.pt").read_bytes() == (tmp_path / "crash" / "checkpoint.pt").read_bytes()
