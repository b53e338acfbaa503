"""Data-parallel training: torchrun with 2 CPU processes (gloo) against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist

from methods.engine import checkpoints
from methods.engine.config import load_method_config
from methods.engine.distributed import GlobalBatchNorm, synchronise_batchnorm
from methods.registry import build_model
from tests.conftest import REPO, TINY_FOMM

#: The tiny FOMM run with the equivariance warps' noise at zero: each process draws its own
#: warps, so only without noise do 2 processes and 1 see the very same computation.
OVERRIDES = {
    **TINY_FOMM,
    "train_params.transform_params": {"sigma_affine": 0.0, "sigma_tps": 0.0, "points_tps": 5},
}


#: With FOMM's GAN: the discriminator's phase goes through the same DDP wrapper.
GAN_OVERRIDES = {
    **OVERRIDES,
    "model_params.discriminator_params": {"scales": [1], "block_expansion": 4, "max_features": 16, "num_blocks": 3,
                                          "sn": True, "use_kp": True},
    "train_params.lr_discriminator": 2.0e-4,
    "train_params.loss_weights.generator_gan": 1,
    "train_params.loss_weights.discriminator_gan": 1,
    "train_params.loss_weights.feature_matching": [10, 10, 10],
}


def _command(dataset: Path, out: Path, nproc: int, overrides: dict) -> list[str]:
    train = [
        "-m", "animbench", "train",
        "--method-config", str(REPO / "methods/configs/fomm/synthetic.yaml"),
        "--overrides", json.dumps(overrides), "--dataset", str(dataset), "--out", str(out),
        "--seed", "4", "--threads", "1", "--no-progress", "--device", "cpu",
    ]
    if nproc == 1:
        return [sys.executable, *train]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *train]


@pytest.mark.slow
@pytest.mark.parametrize("gan", [False, True], ids=["plain", "gan"])
def test_two_gloo_processes_match_one_process(tiny_dataset, tmp_path, gan):
    overrides = GAN_OVERRIDES if gan else OVERRIDES
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for nproc in (1, 2):
        done = subprocess.run(
            _command(tiny_dataset, tmp_path / f"p{nproc}", nproc, overrides), env=env, cwd=REPO,
            capture_output=True, text=True, timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = (checkpoints.read(tmp_path / f"p{n}" / "checkpoint.pt") for n in (1, 2))
    torch.manual_seed(4)  # the trainer's initialisation
    start = checkpoints.model_state(build_model(load_method_config(
        REPO / "methods/configs/fomm/synthetic.yaml", overrides=overrides)))
    moved = differ = 0.0
    for net in ("generator", "kp_detector", *(["discriminator"] if gan else [])):
        for key, value in one[net].items():
            if value.is_floating_point():
                moved += float((value - start[net][key]).pow(2).sum())
                differ += float((two[net][key] - value).pow(2).sum())
            else:
                assert torch.equal(two[net][key], value), f"{net}.{key}"
    # Reductions run in another order over two half batches, and Adam turns the float noise in
    # near-zero gradients (e.g. conv biases before a batch norm, exactly zero in exact
    # arithmetic) into lr-sized steps; so compare how far training moved the weights with how
    # far apart the two runs ended: measured 0.1 %, while unsynchronised gradients or
    # per-process batch statistics put the runs about as far apart as training moved them.
    assert differ**0.5 < 0.02 * moved**0.5, (differ**0.5, moved**0.5)
    logs = [pd.read_csv(tmp_path / f"p{n}" / "train_log.csv") for n in (1, 2)]
    for column in [c for c in logs[0].columns if c.startswith("loss_")]:
        # The logged losses are global-batch means in both runs (measured within 3e-5). Without
        # warp noise the equivariance losses are zero in exact arithmetic: what is logged is
        # float rounding (1e-6 to 4e-6 seen), so they get an absolute tolerance above that.
        assert logs[1][column].tolist() == pytest.approx(logs[0][column].tolist(), rel=1e-3, abs=1e-4), column
    info = json.loads((tmp_path / "p2" / "run.json").read_text())
    assert info["processes"] == 2 and info["device"] == "cpu"


def test_global_batchnorm_without_process_group_is_batchnorm():
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    x = torch.randn(6, 3, 8, 8)
    expected = plain(x)
    synced = synchronise_batchnorm(plain, torch.device("cpu"))
    assert isinstance(synced[1], GlobalBatchNorm) and not dist.is_initialized()
    assert set(synced.state_dict()) == {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"}
    torch.testing.assert_close(synced(x), expected)
