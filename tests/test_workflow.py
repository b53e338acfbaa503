"""The Snakemake workflow: lint clean, config schema enforced, the whole DAG end to end."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
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


COPIED = ("Snakefile", "environment.yml", "workflow", "animbench", "methods", "metrics", "data_prep", "reports")


def _copy_repo(dest: Path) -> Path:
    """A copy of the workflow and packages, so that a test can edit "code"; the rules still run
    the installed `animbench`."""
    dest.mkdir()
    for name in COPIED:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, dest / name)
    return dest


def _tiny_config(path: Path, runs: dict | None = None) -> Path:
    runs = runs or {"fomm": {"method": "fomm", "overrides": TINY_FOMM}}
    config = {
        # L1 only: the synthetic protocol first trains keypoint/identity evaluators (minutes), which
        # their own tests cover; these tests are about the workflow.
        "datasets": {"synthetic": {"builder": "synthetic", "protocol": "l1", "params": TINY_DATASET}},
        "runs": runs,
        "table1": {"datasets": ["synthetic"], "runs": sorted(runs)},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _planned(result: subprocess.CompletedProcess) -> dict[str, set[str]]:
    """rule -> set of `run` wildcards (or "" for jobs without one) of a dry run's plan."""
    planned: dict[str, set[str]] = {}
    for block in re.split(r"\n(?=rule \w+:)", result.stdout):
        head = re.match(r"rule (\w+):", block)
        if head:
            run = re.search(r"wildcards:.*?\brun=([\w-]+)", block)
            planned.setdefault(head.group(1), set()).add(run.group(1) if run else "")
    planned.pop("all", None)
    return planned


def _fake_completed_run(run: Path, runs: list[str]) -> None:
    """Outputs of every job, oldest upstream, so that Snakemake sees the DAG as up to date."""
    stamp = time.time() - 100
    files = ["resources/datasets/synthetic/manifest.csv"]
    for name in runs:
        files += [f"results/synthetic/{name}/{f}" for f in ("checkpoint.pt", "run.json")]
    files += [f"results/synthetic/{name}/reconstruction/index.csv" for name in runs]
    files += [f"results/synthetic/{name}/metrics.csv" for name in runs]
    files += ["reports/table1.html"]
    for i, name in enumerate(files):
        path = run / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        os.utime(path, (stamp + i, stamp + i))


def test_code_edits_rerun_only_the_jobs_that_import_them(tmp_path):
    # Dependencies come from each step's imports, not from whole packages: editing the TPS
    # motion model re-runs TPSMM's jobs and not FOMM's; CPAB (used by neither) re-runs nothing.
    repo = _copy_repo(tmp_path / "repo")
    run = tmp_path / "run"
    run.mkdir()
    runs = {"fomm": {"method": "fomm"}, "tpsmm": {"method": "tpsmm"}}
    config = _tiny_config(tmp_path / "two.yaml", runs)
    old = time.time() - 1000
    for path in repo.rglob("*"):
        os.utime(path, (old, old))
    _fake_completed_run(run, sorted(runs))
    args = ("reports/table1.html", "-n", "--cores", "1", "--configfile", str(config))
    assert _planned(_snakemake(*args, cwd=run, repo=repo)) == {}

    def plan_after_editing(relative: str) -> dict[str, set[str]]:
        path = repo / relative
        original = path.read_text()
        path.write_text(original + "\n# edited\n")
        try:
            result = _snakemake(*args, cwd=run, repo=repo)
            assert result.returncode == 0, result.stdout + result.stderr
            return _planned(result)
        finally:
            path.write_text(original)
            os.utime(path, (old, old))

    # Other rules (evaluators, baselines) follow their own code; this checks the method jobs.
    tps = plan_after_editing("methods/motion/tps.py")
    assert tps["train"] == {"tpsmm"} and tps["reconstruct"] == {"tpsmm"}, tps
    assert "tpsmm" in tps["evaluate"] and "table1" in tps
    cpab = plan_after_editing("methods/motion/cpab/core.py")
    assert "train" not in cpab and "reconstruct" not in cpab, cpab
    fomm = plan_after_editing("methods/models/fomm.py")
    assert fomm["train"] == {"fomm"} and fomm["reconstruct"] == {"fomm"}, fomm
    # Shared code (the trainer) re-runs every method's training.
    assert plan_after_editing("methods/engine/train.py")["train"] == {"fomm", "tpsmm"}
    metrics = plan_after_editing("metrics/l1.py")
    assert "train" not in metrics and "reconstruct" not in metrics, metrics
    assert {"fomm", "tpsmm"} <= metrics["evaluate"] and "table1" in metrics


def test_undefined_run_or_dataset_is_one_line_naming_the_key(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump({"table1": {"datasets": ["synthetic"], "runs": ["fom"]}}))
    result = _snakemake("-n", "--cores", "1", "--configfile", str(config), cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config key 'table1.runs' names run 'fom', which is not defined under 'runs:'" in out, out
    assert "KeyError" not in out and "Missing input" not in out
    # A target naming an undefined run: the same kind of line, not a missing config file.
    result = _snakemake("-n", "--cores", "1", "results/synthetic/nope/metrics.csv", cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "names run 'nope', which is not defined under 'runs:'" in out, out
    assert "KeyError" not in out and "nope.yaml" not in out
    result = _snakemake("-n", "--cores", "1", "results/nodata/fomm/metrics.csv", cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "dataset 'nodata', which is not defined under 'datasets:'" in out, out


def test_killed_run_can_be_unlocked_and_rerun(tmp_path):
    config = _tiny_config(tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    run.mkdir()
    process = subprocess.Popen(
        [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--cores", "1", "--configfile", str(config)],
        cwd=run, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    locks = run / ".snakemake" / "locks"
    deadline = time.time() + 120
    while not (locks.is_dir() and any(locks.iterdir())) and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert locks.is_dir() and any(locks.iterdir()), "the run never took its lock"
    # A dry run ignores the lock; a real one is refused.
    blocked = _snakemake("--cores", "1", "--configfile", str(config), cwd=run)
    assert blocked.returncode != 0 and "--unlock" in blocked.stdout + blocked.stderr
    # The command Snakemake suggests works as suggested: no --cores needed.
    unlocked = _snakemake("--unlock", "--configfile", str(config), cwd=run)
    assert unlocked.returncode == 0, unlocked.stdout + unlocked.stderr
    again = _snakemake("-n", "--cores", "1", "--configfile", str(config), cwd=run)
    assert again.returncode == 0, again.stdout + again.stderr


def test_rules_pass_the_device_their_resources_declare(tmp_path):
    config = _tiny_config(tmp_path / "tiny.yaml")
    base = ("-n", "-p", "--cores", "2", "--configfile", str(config), "--forceall")
    plain = _snakemake(*base, cwd=tmp_path)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert re.search(r"animbench -v train .*--device auto", plain.stdout)
    assert re.search(r"animbench reconstruct .*--device auto", plain.stdout)
    one = _snakemake(*base, "--set-resources", "train:gpu=1", "reconstruct:gpu=1", cwd=tmp_path)
    assert re.search(r"animbench -v train .*--device cuda", one.stdout), one.stdout
    assert re.search(r"animbench reconstruct .*--device cuda", one.stdout)
    four = _snakemake(*base, "--set-resources", "train:gpu=4", cwd=tmp_path)
    assert re.search(r"torchrun --standalone --nproc_per_node=4 -m animbench -v train .*--device cuda", four.stdout), four.stdout


@pytest.mark.slow
def test_default_dag_end_to_end_on_tiny_config(tmp_path):
    repo = _copy_repo(tmp_path / "repo")
    run = tmp_path / "run"
    run.mkdir()
    config = _tiny_config(tmp_path / "tiny.yaml")
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
    assert set(_planned(plan)) == {"evaluate", "table1"}, plan.stdout
    # --forcerun reconstruct recomputes every video, and the earlier attempt's log is kept.
    recon = run / "results/synthetic/fomm/reconstruction"
    before = {p.name: p.stat().st_mtime_ns for p in recon.glob("*.png")}
    first_log = (run / "logs/reconstruct/synthetic/fomm.log").read_text()
    forced = _snakemake(
        "results/synthetic/fomm/reconstruction/index.csv", "--cores", "2", "--forcerun", "reconstruct",
        "--configfile", str(config), cwd=run, repo=repo,
    )
    assert forced.returncode == 0, forced.stdout + forced.stderr
    after = {p.name: p.stat().st_mtime_ns for p in recon.glob("*.png")}
    assert before and after.keys() == before.keys()
    assert all(after[name] > before[name] for name in before), "forcerun reused reconstructions"
    assert (run / "logs/reconstruct/synthetic/fomm.log.1").read_text() == first_log


def test_fetch_weights_plans_every_file_the_reports_need(tmp_path):
    # Offline nothing is downloaded: the dry run lists what `fetch_weights` would fetch.
    demo = _snakemake("fetch_weights", "-n", "--cores", "1", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    planned = set(re.findall(r"output: resources/weights/(\S+)", demo.stdout + demo.stderr))
    # The demo's Table-2 rows with the SAM and DINO losses; the synthetic protocol needs none.
    assert planned == {"sam_vit_b_01ec64.pth", "dino_vitbase8_pretrain.pth"}
    paper = _snakemake(
        "fetch_weights", "-n", "--cores", "1", "--configfile", str(REPO / "workflow/config/paper.yaml"), cwd=tmp_path
    )
    assert paper.returncode == 0, paper.stderr
    planned = set(re.findall(r"output: resources/weights/(\S+)", paper.stdout + paper.stderr))
    assert {"vgg19.pth", "sam_vit_b_01ec64.pth", "dino_vitbase8_pretrain.pth", "2DFAN4-11f355bf06.pth.tar",
            "s3fd-619a316812.pth", "20180402-114759-vggface2.pt", "resnet50_market1501.pt"} <= planned
    assert any(name.startswith("shufflenetv2k16") for name in planned)
