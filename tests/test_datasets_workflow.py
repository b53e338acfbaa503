"""The dataset stages inside Snakemake: the paper DAG plans offline; a video dataset runs per video."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from data_prep.manifest import read_manifest
from tests.test_datasets_real import HEADER, chunk_row, make_video

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "workflow" / "config" / "paper.yaml"
SNAKEMAKE = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or shutil.which("snakemake")


def snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    assert SNAKEMAKE, "snakemake is not installed"
    env_path = f"{Path(sys.executable).parent}:{__import__('os').environ.get('PATH', '')}"
    return subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), *args], cwd=cwd, text=True,
                          capture_output=True, env={**__import__("os").environ, "PATH": env_path},
                          timeout=600)


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_paper_config_plans_every_dataset_method_and_metric_job(tmp_path):
    paper = yaml.safe_load(PAPER.read_text())
    datasets, runs = paper["table1"]["datasets"], paper["table1"]["runs"]
    assert sorted(datasets) == ["mgif", "taichi", "ted", "vox"]
    assert {"fomm", "mraa", "tpsmm", "cpab"} <= set(runs)
    assert {paper["datasets"][d]["protocol"] for d in datasets} == {"taichi", "ted", "vox", "mgif"}
    combos = [(d, r) for d in datasets for r in runs]
    missing = [(d, r) for d, r in combos
               if not (REPO / f"methods/configs/{paper['runs'][r]['method']}/{d}.yaml").is_file()]
    assert not missing, missing
    ablations = [r for r, spec in paper["runs"].items() if "config" in spec]
    # TPSMM's Table 4 (5 rows) and CPAB's Table 2 (6 rows: local, global, KS, struc, full, release)
    assert sorted(r.split("-")[0] for r in ablations) == ["cpab"] * 6 + ["tpsmm"] * 5, ablations
    assert all((REPO / paper["runs"][r]["config"]).is_file() for r in ablations)
    targets = [f"results/{d}/{r}/metrics.csv" for d, r in combos]
    targets += [f"results/taichi/{r}/metrics.csv" for r in ablations]
    targets.append("reports/table1.html")
    result = snakemake(*targets, "-n", "--cores", "1", "--configfile", str(PAPER), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    counts = job_counts(result.stdout)
    n = len(targets) - 1
    assert counts["train"] == counts["reconstruct"] == n
    # ... and every dataset's no-motion baseline row is measured by the same rule.
    assert counts["evaluate"] == n + len(datasets)
    # Table 1's runs (and no-motion rows) measured again with each dataset's paper-* protocol.
    assert {d: paper["datasets"][d]["extra_protocols"] for d in datasets} == {d: [f"paper-{d}"] for d in datasets}
    assert counts["evaluate_extra_protocol"] == len(combos) + len(datasets)
    assert all(paper["datasets"][d]["params"]["resize"] == "paper" for d in ("taichi", "vox", "ted"))
    # Three YouTube datasets through metadata checkpoint + assembly (their per-video jobs are
    # planned once the checkpoint has listed the videos), MGif as one job.
    assert counts["fetch_metadata"] == counts["video_chunks"] == counts["assemble_video_dataset"] == 3
    assert counts["prepare_dataset"] == 1
    assert not list(tmp_path.iterdir()) or all(p.name == ".snakemake" for p in tmp_path.iterdir())


@pytest.mark.slow
def test_video_dataset_runs_one_job_per_video(tmp_path):
    raw = tmp_path / "raw"
    make_video(raw / "vidA.mkv", 20, 10)
    make_video(raw / "-dash_id.mkv", 20, 10)  # YouTube ids may start with '-'
    meta = tmp_path / "meta.csv"
    meta.write_text(HEADER + chunk_row("vidA", 2, 8, (40, 20, 136, 116))
                    + chunk_row("-dash_id", 0, 5, (0, 0, 192, 144), partition="test")
                    + chunk_row("gone", 0, 5, (0, 0, 192, 144), partition="test")
                    + chunk_row("bad", 5, 1, (0, 0, 192, 144)))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"datasets": {"taichi": {
        "builder": "taichi", "protocol": "taichi",
        "params": {"metadata": str(meta), "raw_videos": str(raw), "download": False, "size": 16},
    }}}))
    target = "resources/datasets/taichi/manifest.csv"
    result = snakemake(target, "--cores", "2", "--configfile", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert len(re.findall(r"^Finished jobid: \d+ \(Rule: prepare_video\)", log, re.M)) == 3
    df = read_manifest(tmp_path / "resources/datasets/taichi").set_index("video")
    assert df.loc["vidA#000002#000008", "frames"] == 6
    assert df.loc["-dash_id#000000#000005", "status"] == "ok"
    assert df.loc["gone#000000#000005", "status"] == "missing"
    summary = (tmp_path / "resources/datasets/taichi/availability_summary.csv").read_text()
    assert "invalid_metadata_rows,,1," in summary
    again = snakemake(target, "-n", "--cores", "1", "--configfile", str(config), cwd=tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize("dataset", ["taichi", "vox"])
def test_official_tables_are_pinned(dataset):
    from data_prep.video_dataset import get_spec

    spec = get_spec(dataset)
    assert re.fullmatch(r"[0-9a-f]{64}", spec.metadata_sha256)
    assert re.search(r"/[0-9a-f]{40}/", spec.metadata_url)  # a commit, not a branch
