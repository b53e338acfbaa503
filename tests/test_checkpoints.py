"""Checkpoint files: atomic writes, clear errors, strict loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from methods.engine import checkpoints
from methods.registry import build_model


def test_round_trip_and_strict_load(tiny_fomm_config, tmp_path):
    model = build_model(tiny_fomm_config)
    path = tmp_path / "ckpt.pt"
    checkpoints.save(path, {**checkpoints.model_state(model), "animbench": {"config": tiny_fomm_config}})
    loaded, _ = checkpoints.load_model(path)
    for net in model.checkpoint_keys:
        for key, value in getattr(model, net).state_dict().items():
            assert torch.equal(value, getattr(loaded, net).state_dict()[key]), f"{net}.{key}"
    assert not loaded.training


def test_truncated_checkpoint_is_a_clear_error(tiny_fomm_config, tmp_path):
    model = build_model(tiny_fomm_config)
    path = tmp_path / "ckpt.pt"
    checkpoints.save(path, checkpoints.model_state(model))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoints.CheckpointError, match="truncated or corrupt"):
        checkpoints.read(path)


def test_missing_and_mismatched_checkpoints(tiny_fomm_config, tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="does not exist"):
        checkpoints.read(tmp_path / "nope.pt")
    model = build_model(tiny_fomm_config)
    with pytest.raises(checkpoints.CheckpointError, match="lacks"):
        checkpoints.load_model_state(model, {"generator": {}})
    bigger = dict(tiny_fomm_config["model_params"]["common_params"], num_kp=5)
    other = build_model({**tiny_fomm_config, "model_params": {**tiny_fomm_config["model_params"], "common_params": bigger}})
    with pytest.raises(checkpoints.CheckpointError, match="does not match"):
        checkpoints.load_model_state(model, checkpoints.model_state(other))


def test_save_leaves_no_partial_file_on_failure(tmp_path):
    path = tmp_path / "ckpt.pt"

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        checkpoints.save(path, {"x": Unpicklable()})
    assert list(tmp_path.iterdir()) == []


def test_same_payload_gives_same_bytes(tiny_fomm_config, tmp_path):
    """Saving by path used to put the random temporary name inside the zip."""
    torch.manual_seed(0)
    payload = {**checkpoints.model_state(build_model(tiny_fomm_config)), "epoch": 1}
    checkpoints.save(tmp_path / "a.pt", payload)
    checkpoints.save(tmp_path / "b.pt", payload)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_random_bytes_are_a_one_line_error(tiny_dataset, tmp_path, capsys):
    from animbench.cli import main

    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(checkpoints.CheckpointError, match="truncated or corrupt"):
        checkpoints.read(bad)
    code = main(["reconstruct", "--checkpoint", str(bad), "--dataset", str(tiny_dataset), "--out", str(tmp_path / "r"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and str(bad) in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_names_the_file(tmp_path, monkeypatch):
    """A write failing with ENOSPC (here: into /dev/full) names the checkpoint and says disk full;
    the previous file stays and no temporary is left behind."""
    path = tmp_path / "ckpt.pt"
    checkpoints.save(path, {"x": torch.zeros(3)})
    before = path.read_bytes()

    def write_to_full_device(target, data):
        with open("/dev/full", "wb") as handle:
            handle.write(data)
            handle.flush()

    monkeypatch.setattr(checkpoints, "_write_bytes", write_to_full_device)
    with pytest.raises(checkpoints.CheckpointError, match=rf"cannot write checkpoint {path}: disk full"):
        checkpoints.save(path, {"x": torch.ones(1000)})
    assert path.read_bytes() == before
    assert checkpoints.stale_temporaries(tmp_path) == []


class _Exploit:
    """A pickled object that runs a shell command when unpickled (os.system via __reduce__)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_unread(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"generator": _Exploit(marker), "kp_detector": {}}, evil)
    with pytest.raises(checkpoints.CheckpointError, match=r"holds Python objects .*refused unread"):
        checkpoints.read(evil)
    assert not marker.exists()
    # The command a new user would run: one line, nothing executed, before any config check.
    from animbench.cli import main

    assert main(["reconstruct", "--checkpoint", str(evil), "--dataset", str(tmp_path),
                 "--out", str(tmp_path / "r"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused unread" in err[0], err
    assert not marker.exists()


def test_evaluator_weights_that_are_pickled_objects_load_only_when_their_digest_is_pinned(tmp_path, monkeypatch):
    """openpifpaf and torchreid files are pickled objects: unpickled only after the size and digest
    checks, and only for a file whose digest is published or recorded in the lock file."""
    from data_prep import weights

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": _Exploit(marker)}, evil)
    lock = tmp_path / "weights.lock.csv"
    monkeypatch.setitem(weights.REGISTRY, "evil", weights.WeightsFile("evil", "evil.pth", "https://example.invalid/e", "", "x"))
    with pytest.raises(weights.MissingWeightsError, match=r"pinned nowhere.*animbench weights lock evil"):
        weights.load_pickled("evil", evil, lock)
    assert not marker.exists()
    # Plain tensors load with the narrow loader, pinned or not.
    plain = tmp_path / "plain.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}}, plain)
    assert torch.equal(weights.load_pickled("evil", plain, lock)["state_dict"]["w"], torch.ones(2))
