"""Shared fixtures: a tiny synthetic dataset and shrunk method configs, each in a temp dir."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def tiny_fomm_one_seed(path: Path) -> Path:
    """An override of workflow/config/tiny.yaml down to FOMM trained with seed 0 only: the DAG
    and pages of the tiny config in a minute, for tests about the workflow rather than the
    numbers (its regression check compares with the 3-seed baseline's FOMM rows)."""
    import yaml

    path.write_text(yaml.safe_dump({"runs": {"fomm": {"seeds": [0]}}, "table1": {"runs": ["fomm"]}}))
    return path

#: A synthetic dataset small enough for unit tests (seconds to generate, ~1 s to train on).
TINY_DATASET = {
    "size": 64,
    "num_identities": 3,
    "num_test_identities": 1,
    "train_videos": 4,
    "test_videos": 2,
    "min_frames": 5,
    "max_frames": 7,
    "seed": 3,
}

#: Dotted overrides shrinking the demo FOMM config to a few steps of a very small network.
TINY_FOMM = {
    "train_params.num_epochs": 2,
    "train_params.num_repeats": 4,  # 2 steps of 4 per epoch: the dataset has 2 train identities
    "train_params.batch_size": 4,
    "train_params.epoch_milestones": [1],
    "model_params.kp_detector_params.block_expansion": 8,
    "model_params.kp_detector_params.max_features": 32,
    "model_params.generator_params.block_expansion": 8,
    "model_params.generator_params.max_features": 32,
    "model_params.generator_params.num_bottleneck_blocks": 1,
    "model_params.generator_params.dense_motion_params.block_expansion": 8,
    "model_params.generator_params.dense_motion_params.max_features": 32,
}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated tiny synthetic dataset; treat it as read-only."""
    from data_prep.synthetic import generate

    return generate(TINY_DATASET, tmp_path_factory.mktemp("data") / "synthetic")


@pytest.fixture
def tiny_fomm_config() -> dict:
    from methods.engine.config import load_method_config

    return copy.deepcopy(load_method_config(REPO / "methods/configs/fomm/synthetic.yaml", overrides=TINY_FOMM))


@pytest.fixture
def one_thread():
    """Small networks: one thread is faster, and far faster on a shared, loaded CPU
    (test modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
