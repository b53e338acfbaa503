"""Regression checks: per-video baselines, verdicts (identical, worse, better, within noise), page, exit status."""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from animbench.cli import main
from animbench.workflow_config import load_workflow_config
from reports.regression import collect, compare, read_baseline, write_baseline
from tests.conftest import REPO, tiny_fomm_one_seed

VIDEOS = [f"v{i}" for i in range(6)]


def _fake_results(root: Path, l1: dict[str, list[float]], extra: dict[str, list[float]] | None = None) -> None:
    """metrics.csv of runs on the synthetic dataset: per video (6 videos of 3 frames) the given
    mean, the frames at mean - 0.01, mean, mean + 0.01 (the mean per video is exact)."""
    for run, means in l1.items():
        path = root / "results/synthetic" / run / "metrics.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"video": v, "frame": f, "l1": m + d} for v, m in zip(VIDEOS, means, strict=True) for f, d in enumerate((-0.01, 0, 0.01))]
        table = pd.DataFrame(rows)
        for metric, more in (extra or {}).items():
            table[metric] = [x for x in more for _ in range(3)]
        table.to_csv(path, index=False)


def _config(tmp_path: Path, runs=("fomm", "tpsmm"), min_effect=None) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "runs": {r: {"method": r} for r in runs},
        "table1": {"datasets": ["synthetic"], "runs": list(runs)},
        "regression": {"baseline": "mine", "min_effect": min_effect or {"default": {"abs": 0.01}}},
    }))
    return path


def _per_video(run: str, means: list[float], metric: str = "l1", seed: int = 0, frames: int = 4) -> pd.DataFrame:
    """Baseline-format rows: one per video with the given mean over ``frames`` frames."""
    return pd.DataFrame([
        {"dataset": "d", "run": run, "method": run, "seed": seed, "metric": metric, "video": f"v{i}",
         "sum": m * frames, "frames": frames}
        for i, m in enumerate(means)
    ])


NOISY = [0.10, 0.12, 0.09, 0.11, 0.13, 0.08]


def test_verdicts_identical_worse_better_within_noise_and_vanished():
    base = pd.concat([_per_video(r, NOISY) for r in ("same", "worse", "small", "better", "noisy", "gone")])
    current = pd.concat([
        _per_video("same", NOISY),
        _per_video("worse", [m + 0.03 for m in NOISY]),          # every video +0.03 > abs 0.01
        _per_video("small", [m + 0.005 for m in NOISY]),         # beyond noise, below the effect
        _per_video("better", [m - 0.03 for m in NOISY]),
        _per_video("noisy", [m + d for m, d in zip(NOISY, (0.02, -0.02, 0.02, -0.02, 0.02, -0.02), strict=True)]),
        _per_video("new", NOISY),
    ])
    result = compare(current, base, {"default": {"abs": 0.01}}).set_index("run")
    assert result.loc["same", "direction"] == "identical" and not result.loc["same", "regressed"]
    assert result.loc["same", "delta"] == 0
    worse = result.loc["worse"]
    assert worse["direction"] == "worse" and worse["regressed"]
    # A constant shift: the exact difference, and a zero-width interval around it.
    assert worse["delta"] == pytest.approx(0.03, abs=1e-12)
    assert worse["low"] == pytest.approx(0.03, abs=1e-12) and worse["high"] == pytest.approx(0.03, abs=1e-12)
    assert result.loc["small", "direction"] == "within noise" and not result.loc["small", "regressed"]
    assert result.loc["better", "direction"] == "better" and not result.loc["better", "regressed"]
    noisy = result.loc["noisy"]
    assert noisy["direction"] == "within noise" and noisy["low"] < 0 < noisy["high"]
    # A run that vanished or appeared is a regression too, not silently dropped.
    assert result.loc["gone", "regressed"] and "missing" in result.loc["gone", "direction"]
    assert result.loc["new", "regressed"] and "new" in result.loc["new", "direction"]
    assert math.isnan(result.loc["gone", "delta"])


def test_a_test_video_measured_on_one_side_only_regresses():
    base = _per_video("a", NOISY)
    current = base[base["video"] != "v5"]  # the hardest? any: the means are over other videos
    result = compare(current, base, {"default": {"abs": 0.01}})
    assert result["regressed"].item()
    assert result["direction"].item() == "test videos differ: 1 measured only in the baseline (v5)"
    grown = compare(base, current, {})
    assert grown["regressed"].item() and "1 only here (v5)" in grown["direction"].item()


def test_numeric_video_names_and_unmeasured_metrics_survive_the_baseline_round_trip(tmp_path):
    # Video "0001" must not come back as 1, and a metric measured on no frame keeps its place.
    root = tmp_path / "run"
    path = root / "results/synthetic/fomm/metrics.csv"
    path.parent.mkdir(parents=True)
    pd.DataFrame({"video": ["0001", "0001", "0002", "0010"], "frame": [0, 1, 0, 0],
                  "l1": [0.1, 0.2, 0.3, 0.4], "akd": [math.nan] * 4}).to_csv(path, index=False)
    config = load_workflow_config([_config(tmp_path, runs=("fomm",))], REPO)
    table = collect(config, root)
    assert set(table[table["metric"] == "l1"]["video"]) == {"0001", "0002", "0010"}
    akd = table[table["metric"] == "akd"]
    assert len(akd) == 1 and akd["frames"].item() == 0 and math.isnan(akd["sum"].item())
    stored = read_baseline(write_baseline(table, tmp_path / "b.csv"))
    result = compare(collect(config, root), stored, {}).set_index("metric")
    assert result.loc["l1", "direction"] == "identical" and result.loc["l1", "videos"] == 3
    assert result.loc["akd", "direction"] == "identical" and result.loc["akd", "videos"] == 0
    # Measured now where the baseline measured nothing: a change, not silently passed.
    pd.DataFrame({"video": ["0001", "0001", "0002", "0010"], "frame": [0, 1, 0, 0],
                  "l1": [0.1, 0.2, 0.3, 0.4], "akd": [1.0] * 4}).to_csv(path, index=False)
    changed = compare(collect(config, root), stored, {}).set_index("metric")
    assert changed.loc["akd", "regressed"] and changed.loc["akd", "direction"] == "measured on no frame in the baseline"
    assert not changed.loc["l1", "regressed"]


def test_relative_effect_scales_with_the_baseline_and_higher_can_be_better():
    base = _per_video("a", [10.0, 10.2, 9.8], metric="akd")
    current = _per_video("a", [10.4, 10.6, 10.2], metric="akd")           # +4 %
    assert compare(current, base, {"akd": {"rel": 0.05}})["direction"].item() == "within noise"
    assert compare(current, base, {"akd": {"rel": 0.03}})["regressed"].item()
    # For a metric where higher is better the same rise is an improvement.
    flipped = compare(current, base, {"akd": {"rel": 0.03, "better": "higher"}})
    assert flipped["direction"].item() == "better" and not flipped["regressed"].item()


def test_the_baseline_seed_spread_is_the_smallest_effect_that_counts():
    # Two baseline seeds 0.04 apart: a new pair of seeds 0.02 worse on every video is within the
    # spread, 0.06 worse is beyond it.
    base = pd.concat([_per_video("a", NOISY, seed=0), _per_video("a", [m + 0.04 for m in NOISY], seed=1)])
    def shifted(by):
        return pd.concat([_per_video("a", [m + by for m in NOISY], seed=0),
                          _per_video("a", [m + 0.04 + by for m in NOISY], seed=1)])
    effect = {"default": {"abs": 0.001}}
    near = compare(shifted(0.02), base, effect)
    assert near["direction"].item() == "within noise"
    assert near["seed_spread"].item() == pytest.approx(0.04 / math.sqrt(2), rel=1e-9)
    assert compare(shifted(0.06), base, effect)["direction"].item() == "worse"
    # Other seeds than the baseline's are compared all the same, and the page says so.
    other = compare(_per_video("a", NOISY, seed=5), _per_video("a", NOISY, seed=0), effect)
    assert other["direction"].item() == "within noise" and other["seeds"].item() == "5 (baseline 0)"
    worse = compare(_per_video("a", [m + 0.03 for m in NOISY], seed=5), _per_video("a", NOISY, seed=0), effect)
    assert worse["direction"].item() == "worse"


def test_baseline_update_then_check_passes_and_a_regression_exits_nonzero(tmp_path, capsys):
    root = tmp_path / "run"
    akd = {"akd": [1.0, 2.0, 3.0, 1.5, 2.5, 3.5]}
    _fake_results(root, {"fomm": NOISY, "tpsmm": [0.2] * 6}, extra=akd)
    config = _config(tmp_path)
    baseline = tmp_path / "mine.csv"
    assert main(["baseline", "update", "--config", str(config), "--root", str(root), "--out", str(baseline)]) == 0
    assert "baseline of 4 metrics (24 per-video values)" in capsys.readouterr().out
    table = read_baseline(baseline)
    assert set(table["metric"]) == {"l1", "akd"} and len(table) == 24 and set(table["video"]) == set(VIDEOS)
    fomm = table[(table["run"] == "fomm") & (table["metric"] == "l1")].set_index("video")
    assert fomm.loc["v1", "sum"] == pytest.approx(3 * 0.12, abs=1e-12) and fomm.loc["v1", "frames"] == 3
    # Written and read back without losing a bit: the same results compare as identical.
    again = collect(load_workflow_config([config], REPO), root)
    assert set(compare(again, table, {})["direction"]) == {"identical"}

    # The check reads workflow/baselines/{name}.csv: point it at ours through the config.
    name = f"test-{tmp_path.name}"
    committed = REPO / "workflow/baselines" / f"{name}.csv"
    cfg = yaml.safe_load(config.read_text())
    cfg["regression"]["baseline"] = name
    config.write_text(yaml.safe_dump(cfg))
    write_baseline(table, committed)
    try:
        page = tmp_path / "reports/regression.html"
        args = ["report", "regression", "--config", str(config), "--root", str(root), "--out", str(page)]
        assert main(args) == 0
        assert "regression check passed: 4 metrics (4 identical)" in capsys.readouterr().out
        html = page.read_text()
        assert "tpsmm" in html and "passed" in html
        # Make tpsmm's L1 worse by 0.05 on every video (> abs 0.01): the command exits 1.
        _fake_results(root, {"tpsmm": [0.25] * 6}, extra=akd)
        assert main(args) == 1
        out = capsys.readouterr().out
        assert re.search(r"regression check failed: 1 of 4 metrics: tpsmm/synthetic l1 worse \(\+0\.05", out), out
        html = page.read_text()
        row = re.search(r'<tr class="regressed">(.*?)</tr>', html, flags=re.S).group(1)
        assert "tpsmm" in row and "l1" in row and "+0.05" in row and "worse" in row
    finally:
        committed.unlink()


def test_missing_or_old_baseline_and_missing_results_are_one_line_errors(tmp_path, capsys):
    config = _config(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    cfg["regression"]["baseline"] = "no-such-baseline"
    config.write_text(yaml.safe_dump(cfg))
    root = tmp_path / "run"
    _fake_results(root, {"fomm": NOISY, "tpsmm": NOISY})
    out = tmp_path / "regression.html"
    assert main(["report", "regression", "--config", str(config), "--root", str(root), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no-such-baseline.csv: no baseline" in err and "baseline update" in err
    assert main(["baseline", "update", "--config", str(config), "--root", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "metrics.csv: no metrics for run 'fomm'" in err
    # A baseline of frame-weighted means only (the format before per-video values).
    old = tmp_path / "old.csv"
    old.write_text("dataset,run,method,metric,value,frames\nsynthetic,fomm,fomm,l1,0.2,13\n")
    with pytest.raises(ValueError, match="not a per-video baseline .*animbench baseline update"):
        read_baseline(old)


def test_min_effect_config_is_schema_checked(tmp_path, capsys):
    config = _config(tmp_path, min_effect={"l1": {"abs": -1}})
    assert main(["baseline", "update", "--config", str(config), "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "config.yaml: 'regression.min_effect.l1.abs': -1 is less than the minimum of 0" in err
    # The former key names its replacement through the allowed keys.
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"regression": {"tolerances": {"default": {"abs": 0.01}}}}))
    assert main(["baseline", "update", "--config", str(path), "--root", str(tmp_path)]) == 1
    assert "unknown key 'tolerances' under 'regression' (allowed: baseline, datasets, min_effect, runs)" in capsys.readouterr().err


# The Snakemake side (the committed tiny baseline passes; a worse baseline fails the command and
# the page survives in the log) runs in tests/test_browser.py, on the same tiny DAG run.


@pytest.mark.slow
def test_a_regressed_workflow_fails_and_keeps_the_page_where_the_user_looks(tmp_path):
    # A baseline no run can reach (L1 0): the check regresses. Snakemake deletes a failed job's
    # outputs, so the job succeeds and the run as a whole exits non-zero.
    from tests.test_workflow import SNAKEMAKE, _env

    name = f"test-unreachable-{tmp_path.name}"
    committed = REPO / "workflow/baselines" / f"{name}.csv"
    pd.read_csv(REPO / "workflow/baselines/tiny.csv").assign(sum=0.0).to_csv(committed, index=False)
    tiny = yaml.safe_load((REPO / "workflow/config/tiny.yaml").read_text())
    tiny["regression"]["baseline"] = name
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny))
    run = tmp_path / "run"
    run.mkdir()
    command = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "reports/regression.html", "--cores", "2",
               "--configfile", str(config), str(tiny_fomm_one_seed(tmp_path / "fomm_only.yaml"))]
    try:
        result = subprocess.run(command, cwd=run, env=_env(), capture_output=True, text=True, timeout=600)
    finally:
        committed.unlink()
    assert result.returncode != 0, result.stdout + result.stderr
    assert re.search(r"regression check failed: 1 of 1 metrics: fomm/synthetic l1 worse", result.stderr), result.stderr[-3000:]
    page = run / "reports/regression.html"
    assert page.is_file() and '<tr class="regressed">' in page.read_text()
    assert (run / "logs/report/regression.verdict").read_text().startswith("regressed: ")
    # The same results against a baseline they meet: exit 0, and the verdict says so.
    tiny["regression"]["baseline"] = "tiny"
    config.write_text(yaml.safe_dump(tiny))
    result = subprocess.run(command, cwd=run, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (run / "logs/report/regression.verdict").read_text().startswith("passed: ")


@pytest.mark.slow
def test_the_tiny_check_flags_a_degradation_passes_a_reseed_and_an_exact_rerun(tmp_path):
    # The tiny config's regression check on real runs, three seeds a side, as the config says
    # (tests/benchmarks/bench_regression.py measures the same over more seeds and degradations).
    from tests.benchmarks.bench_regression import DEGRADATIONS, check, degrade, run_tiny
    from tests.test_workflow import SNAKEMAKE, _env

    first = run_tiny(tmp_path / "seeds012", [0, 1, 2])
    found = check(first)
    assert not found["regressed"].any(), found.to_string()
    assert len(found) == 4 and set(found["run"]) == {"fomm", "mraa", "tpsmm", "cpab"}

    # Every pixel's error to the ground truth 5 % larger: L1 +5 % on every run, flagged worse.
    degraded = check(degrade(first, tmp_path / "degraded", DEGRADATIONS["error x1.05"]))
    assert (degraded["delta"] / degraded["baseline"]).between(0.04, 0.06).all(), degraded.to_string()
    assert (degraded["direction"] == "worse").all(), degraded.to_string()

    # Training again with the same seed gives the same bits: identical, no statistics.
    override = first / "seeds.yaml"
    loaded = load_workflow_config([REPO / "workflow/config/tiny.yaml", override], REPO)
    before = collect(loaded, first)
    result = subprocess.run(
        [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "results/synthetic/tpsmm-seed1/metrics.csv", "--cores", "2",
         "--forcerun", "train", "--configfile", str(REPO / "workflow/config/tiny.yaml"), str(override)],
        cwd=first, env=_env(), capture_output=True, text=True,
    )
    assert result.returncode == 0 and "rule train:" in result.stdout + result.stderr, result.stderr[-3000:]
    assert set(compare(collect(loaded, first), before, {})["direction"]) == {"identical"}

    # Three other seeds: other models, none flagged worse.
    reseeded = check(run_tiny(tmp_path / "seeds345", [3, 4, 5]))
    assert not reseeded["regressed"].any(), reseeded.to_string()
    assert set(reseeded["seeds"]) == {"3, 4, 5 (baseline 0, 1, 2)"}
