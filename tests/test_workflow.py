"""The Snakemake workflow: lint clean, config schema enforced, the whole DAG end to end."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, TINY_DATASET, TINY_FOMM

SNAKEMAKE = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or shutil.which("snakemake")


def _env() -> dict[str, str]:
    # The rules call the `animbench` console script of this interpreter's environment.
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def _snakemake(*args: str, cwd: Path, repo: Path = REPO) -> subprocess.CompletedProcess:
    assert SNAKEMAKE, "snakemake is not installed"
    return subprocess.run(
        [SNAKEMAKE, "--snakefile", str(repo / "Snakefile"), *args],
        cwd=cwd, env=_env(), capture_output=True, text=True,
    )


def test_lint_is_clean(tmp_path):
    result = _snakemake("--lint", cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_wrong_config_key_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"runs": {"fomm": {"method": "fomm", "overides": {}}}}))
    result = _snakemake("--configfile", str(bad), "-n", cwd=tmp_path)
    assert result.returncode != 0
    assert "overides" in result.stdout + result.stderr


def test_dry_run_plans_every_step(tmp_path):
    result = _snakemake("-n", "--cores", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for rule in ("prepare_dataset", "train", "reconstruct", "evaluate", "table1"):
        assert rule in result.stdout


@pytest.mark.slow
def test_default_dag_end_to_end_on_tiny_config(tmp_path):
    # A copy of the workflow and packages, so that the test can edit "code" below; the rules
    # still run the installed `animbench`.
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("Snakefile", "environment.yml", "workflow", "methods", "metrics", "data_prep", "reports"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, repo / name)
    run = tmp_path / "run"
    run.mkdir()
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "datasets": {"synthetic": {"builder": "synthetic", "protocol": "synthetic", "params": TINY_DATASET}},
                "runs": {"fomm": {"method": "fomm", "overrides": TINY_FOMM}},
            }
        )
    )
    result = _snakemake("reports/table1.html", "--cores", "2", "--configfile", str(config), cwd=run, repo=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    html = (run / "reports/table1.html").read_text()
    metrics = pd.read_csv(run / "results/synthetic/fomm/metrics.csv")
    assert f"{metrics['l1'].mean():.4f}" in html
    assert metrics["l1"].between(0, 1).all() and metrics["l1"].gt(0).any()
    for log in ("prepare/synthetic", "train/synthetic/fomm", "reconstruct/synthetic/fomm", "evaluate/synthetic/fomm"):
        assert (run / "logs" / f"{log}.log").exists()
    # Nothing left to do: the DAG is complete and up to date.
    again = _snakemake("reports/table1.html", "-n", "--cores", "1", "--configfile", str(config), cwd=run, repo=repo)
    assert "Nothing to be done" in again.stdout + again.stderr
    # Editing metrics/ code re-runs evaluation and the report, not training or reconstruction.
    with open(repo / "metrics" / "l1.py", "a") as handle:
        handle.write("\n# edited\n")
    plan = _snakemake("reports/table1.html", "-n", "--cores", "1", "--configfile", str(config), cwd=run, repo=repo)
    jobs = set(re.findall(r"^(\w+)\s+1$", plan.stdout, flags=re.M))
    assert jobs == {"evaluate", "table1"}, plan.stdout
