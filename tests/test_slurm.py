"""The SLURM profile on a real one-node cluster: the tiny DAG, one job killed, same report.

Starts munged, slurmctld and slurmd on this machine (workflow/scripts/local_slurm.sh; Debian's
slurm-wlm and munge are installed with apt-get when missing, which needs root), submits the tiny
DAG through a copy of workflow/profiles/slurm, cancels the first training job once it runs and
checks that Snakemake resubmits it and that the run ends with the metrics of a local run
(the committed tiny baseline, workflow/baselines/tiny.csv).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from animbench.workflow_config import load_workflow_config
from reports.regression import check
from tests.conftest import REPO, tiny_fomm_one_seed
from tests.test_workflow import SNAKEMAKE, _env

pytestmark = pytest.mark.slow

SCRIPT = REPO / "workflow/scripts/local_slurm.sh"


def _install_slurm() -> None:
    if all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "munged", "sbatch")):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("slurm-wlm/munge missing and cannot be installed (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"]):
        subprocess.run(["flock", "/tmp/apt.lock", *command], check=True, env=env, capture_output=True)


@pytest.fixture
def slurm_cluster(tmp_path_factory):
    """SLURM_CONF of a running one-node cluster; the daemons are stopped afterwards."""
    _install_slurm()
    state = tmp_path_factory.mktemp("slurm")
    started = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield state / "slurm.conf"
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, text=True)
    for pidfile in ("slurmctld.pid", "slurmd.pid"):
        assert not (state / pidfile).exists(), f"{pidfile} left behind: daemon not stopped"


def _test_profile(dest: Path) -> Path:
    """workflow/profiles/slurm with what this cluster lacks switched off: no GPUs, and status
    checks every few seconds instead of the default 40 s."""
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    for resources in profile["set-resources"].values():
        resources["gpu"] = 0
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["latency-wait"] = 5
    dest.mkdir()
    (dest / "config.yaml").write_text(yaml.safe_dump(profile))
    return dest


def _cancel_first_training_job(env: dict[str, str], cancelled: list[str], stop: threading.Event) -> None:
    """scancel the first `train` job as soon as it runs (its comment names the rule)."""
    while not stop.is_set():
        listing = subprocess.run(
            ["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], env=env, capture_output=True, text=True
        ).stdout
        for line in listing.splitlines():
            job, _, comment = line.partition("|")
            if "rule_train" in comment:
                time.sleep(2)  # let it get going, so the retry starts from a partial run
                subprocess.run(["scancel", job], env=env, check=True)
                cancelled.append(job)
                return
        time.sleep(0.5)


def test_tiny_dag_through_slurm_profile_survives_a_cancelled_job(tmp_path, slurm_cluster):
    config = REPO / "workflow/config/tiny.yaml"
    fomm_only = tiny_fomm_one_seed(tmp_path / "fomm_only.yaml")
    env = {**_env(), "SLURM_CONF": str(slurm_cluster)}
    profile = _test_profile(tmp_path / "profile")

    cluster = tmp_path / "cluster"
    cluster.mkdir()
    cancelled: list[str] = []
    stop = threading.Event()
    killer = threading.Thread(target=_cancel_first_training_job, args=(env, cancelled, stop), daemon=True)
    killer.start()
    try:
        result = subprocess.run(
            [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--profile", str(profile),
             "--configfile", str(config), str(fomm_only)],
            cwd=cluster, env=env, capture_output=True, text=True, timeout=1200,
        )
    finally:
        stop.set()
        killer.join()
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert cancelled, "no training job was seen running on the cluster"
    # The cancelled job failed and was resubmitted (retries: 1 in the profile).
    assert "Error in rule train" in log and "Trying to restart job" in log, log
    assert (cluster / "reports/table1.html").is_file()

    # The cluster's numbers are a local run's: workflow/baselines/tiny.csv holds the local tiny
    # run's per-video values (its FOMM seed 0 among them; thread counts differ, so not bitwise),
    # and the table shows them.
    loaded = load_workflow_config([config, fomm_only], REPO)
    comparison = check(loaded, cluster, REPO)
    assert set(comparison["direction"]) <= {"identical", "within noise"}, comparison.to_string()
    l1 = pd.read_csv(cluster / "results/synthetic/fomm-seed0/metrics.csv")["l1"].mean()
    assert f"{l1:.4f}" in (cluster / "reports/table1.html").read_text()
    # Every job ran through sbatch: each left its SLURM log.
    assert list((cluster / ".snakemake/slurm_logs").rglob("*.log"))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
