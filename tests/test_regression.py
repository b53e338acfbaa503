"""Regression checks: baseline update, comparison with tolerances, page, exit status."""

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
from tests.conftest import REPO


def _fake_results(root: Path, l1: dict[str, list[float]], extra: dict[str, list[float]] | None = None) -> None:
    """metrics.csv of runs on the synthetic dataset with the given per-frame values."""
    for run, values in l1.items():
        path = root / "results/synthetic" / run / "metrics.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pd.DataFrame({"video": "v0", "frame": range(len(values)), "l1": values})
        for metric, more in (extra or {}).items():
            table[metric] = more
        table.to_csv(path, index=False)


def _config(tmp_path: Path, runs=("fomm", "tpsmm"), tolerances=None) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "runs": {r: {"method": r} for r in runs},
        "table1": {"datasets": ["synthetic"], "runs": list(runs)},
        "regression": {"baseline": "mine", "tolerances": tolerances or {"default": {"abs": 0.01}}},
    }))
    return path


def test_compare_flags_only_moves_beyond_tolerance_in_the_worse_direction():
    base = pd.DataFrame([
        {"dataset": "d", "run": r, "method": r, "metric": m, "value": v, "frames": 10}
        for r, m, v in [("a", "l1", 0.10), ("b", "l1", 0.10), ("c", "l1", 0.10), ("a", "aed", 0.5), ("gone", "l1", 0.1)]
    ])
    current = base[base["run"] != "gone"].copy()
    current.loc[current["run"].eq("a") & current["metric"].eq("l1"), "value"] = 0.105   # worse, within abs
    current.loc[current["run"].eq("b"), "value"] = 0.13                                 # worse, beyond
    current.loc[current["run"].eq("c"), "value"] = 0.07                                 # better, beyond
    current.loc[current["metric"].eq("aed"), "value"] = 0.4                             # higher is better
    tolerances = {"default": {"abs": 0.01}, "aed": {"abs": 0.0, "better": "higher"}}
    result = compare(current, base, tolerances).set_index(["run", "metric"])
    assert not result.loc[("a", "l1"), "beyond"] and result.loc[("a", "l1"), "direction"] == "worse"
    assert result.loc[("b", "l1"), "regressed"] and result.loc[("b", "l1"), "delta"] == pytest.approx(0.03)
    assert result.loc[("c", "l1"), "beyond"] and not result.loc[("c", "l1"), "regressed"]
    assert result.loc[("c", "l1"), "direction"] == "better"
    assert result.loc[("a", "aed"), "regressed"] and result.loc[("a", "aed"), "direction"] == "worse"
    # A run that vanished from the results is a regression too, not silently dropped.
    assert result.loc[("gone", "l1"), "regressed"] and "missing" in result.loc[("gone", "l1"), "direction"]
    assert math.isnan(result.loc[("gone", "l1"), "delta"])


def test_relative_tolerance_scales_with_the_baseline():
    base = pd.DataFrame([{"dataset": "d", "run": "a", "method": "a", "metric": "akd", "value": 10.0, "frames": 1}])
    current = base.assign(value=10.4)
    assert not compare(current, base, {"akd": {"rel": 0.05}})["beyond"].item()
    assert compare(current, base, {"akd": {"rel": 0.03}})["regressed"].item()


def test_baseline_update_then_check_passes_and_a_regression_exits_nonzero(tmp_path, capsys):
    root = tmp_path / "run"
    _fake_results(root, {"fomm": [0.1, 0.2, 0.3], "tpsmm": [0.2, 0.2, 0.2]}, extra={"akd": [1.0, 2.0, 3.0]})
    config = _config(tmp_path)
    baseline = tmp_path / "mine.csv"
    assert main(["baseline", "update", "--config", str(config), "--root", str(root), "--out", str(baseline)]) == 0
    table = read_baseline(baseline)
    assert set(table["metric"]) == {"l1", "akd"} and len(table) == 4
    assert table.set_index(["run", "metric"]).loc[("fomm", "l1"), "value"] == pytest.approx(0.2, abs=1e-12)
    # Written and read back without losing precision (the tiny CPU baseline is exact).
    again = collect(load_workflow_config([config], REPO), root)
    assert compare(again, table, {})["delta"].abs().max() == 0

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
        assert "regression check passed" in capsys.readouterr().out
        html = page.read_text()
        assert "tpsmm" in html and "passed" in html
        # Make tpsmm's L1 worse by 0.05 (> abs 0.01): the command exits 1 and the page says so.
        _fake_results(root, {"tpsmm": [0.25, 0.25, 0.25]}, extra={"akd": [1.0, 2.0, 3.0]})
        assert main(args) == 1
        out = capsys.readouterr().out
        assert re.search(r"regression check failed: 1 of 4 metrics: tpsmm/synthetic l1 worse \(\+0\.05", out), out
        html = page.read_text()
        row = re.search(r'<tr class="regressed">(.*?)</tr>', html, flags=re.S).group(1)
        assert "tpsmm" in row and "l1" in row and "+0.05" in row and "yes" in row
    finally:
        committed.unlink()


def test_missing_baseline_and_missing_results_are_one_line_errors(tmp_path, capsys):
    config = _config(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    cfg["regression"]["baseline"] = "no-such-baseline"
    config.write_text(yaml.safe_dump(cfg))
    root = tmp_path / "run"
    _fake_results(root, {"fomm": [0.1], "tpsmm": [0.1]})
    out = tmp_path / "regression.html"
    assert main(["report", "regression", "--config", str(config), "--root", str(root), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no-such-baseline.csv: no baseline" in err and "baseline update" in err
    assert main(["baseline", "update", "--config", str(config), "--root", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "metrics.csv: no metrics for run 'fomm'" in err


def test_tolerance_config_is_schema_checked(tmp_path, capsys):
    config = _config(tmp_path, tolerances={"l1": {"abs": -1}})
    assert main(["baseline", "update", "--config", str(config), "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "config.yaml: 'regression.tolerances.l1.abs': -1 is less than the minimum of 0" in err


# The Snakemake side (the committed tiny baseline passes; a worse baseline fails the command and
# the page survives in the log) runs in tests/test_browser.py, on the same tiny DAG run.


@pytest.mark.slow
def test_a_regressed_workflow_fails_and_keeps_the_page_where_the_user_looks(tmp_path):
    # A baseline no run can reach (L1 0): the check regresses. Snakemake deletes a failed job's
    # outputs, so the job succeeds and the run as a whole exits non-zero.
    from tests.test_workflow import SNAKEMAKE, _env

    name = f"test-unreachable-{tmp_path.name}"
    committed = REPO / "workflow/baselines" / f"{name}.csv"
    pd.read_csv(REPO / "workflow/baselines/tiny.csv").assign(value=0.0).to_csv(committed, index=False)
    tiny = yaml.safe_load((REPO / "workflow/config/tiny.yaml").read_text())
    tiny["regression"]["baseline"] = name
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny))
    run = tmp_path / "run"
    run.mkdir()
    command = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "reports/regression.html", "--cores", "2",
               "--configfile", str(config)]
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
