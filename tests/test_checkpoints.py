"""Checkpoint files: atomic writes, clear errors, strict loading."""

from __future__ import annotations

import pytest
import torch

from methods import checkpoints
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
