"""Seeds as a run dimension: names, config checks, the DAG's plan, Table 1 and the compare page."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml

from animbench.cli import main
from data_prep.manifest import available_videos
from data_prep.video import read_video, write_stacked_png
from reports.compare import render_compare
from reports.regression import collect, compare, read_baseline, write_baseline
from reports.seeds import collisions, expand, member_seeds, members, resolve
from reports.table1 import render_table1
from reports.table2 import render_table2
from tests.conftest import REPO

CONFIG = {"seed": 7, "runs": {"fomm": {"method": "fomm", "seeds": [0, 2]}, "mraa": {"method": "mraa"}}}


def test_names_of_the_trained_runs_and_back():
    assert members(CONFIG, "fomm") == ["fomm-seed0", "fomm-seed2"] and members(CONFIG, "mraa") == ["mraa"]
    assert member_seeds(CONFIG, "fomm") == {"fomm-seed0": 0, "fomm-seed2": 2}
    assert member_seeds(CONFIG, "mraa") == {"mraa": 7}  # the top-level seed
    assert expand(CONFIG, ["mraa", "fomm"]) == ["mraa", "fomm-seed0", "fomm-seed2"]
    assert resolve(CONFIG, "fomm-seed2") == ("fomm", 2) and resolve(CONFIG, "mraa") == ("mraa", 7)
    # Not trained: a seed the run does not list, the run itself, a seed of a run without seeds.
    assert resolve(CONFIG, "fomm-seed1") is None and resolve(CONFIG, "fomm") is None
    assert resolve(CONFIG, "mraa-seed7") is None
    assert resolve(CONFIG, "fomm-seed02") is None  # only the exact name: no second folder for seed 2
    assert collisions({**CONFIG, "runs": {**CONFIG["runs"], "fomm-seed2": {"method": "fomm"}}}) == ["fomm-seed2"]


def _write(tmp_path, config):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize(("runs", "message"), [
    ({"fomm": {"method": "fomm", "seeds": [1, 1]}}, "'runs.fomm.seeds': [1, 1] has non-unique elements"),
    ({"fomm": {"method": "fomm", "seeds": []}}, "'runs.fomm.seeds': [] should be non-empty"),
    ({"fomm": {"method": "fomm", "seeds": [0, 1]}, "fomm-seed1": {"method": "fomm"}},
     "run 'fomm-seed1' is also the name of a seed of another run"),
])
def test_bad_seeds_are_one_line_config_errors(tmp_path, capsys, runs, message):
    config = _write(tmp_path, {"runs": runs, "table1": {"datasets": ["synthetic"], "runs": ["fomm"]}})
    assert main(["baseline", "update", "--config", config, "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_the_dag_trains_each_seed_with_its_seed(tmp_path):
    from tests.test_workflow import _snakemake

    config = _write(tmp_path, {
        "runs": {"fomm": {"method": "fomm", "seeds": [0, 3]}},
        "table1": {"datasets": ["synthetic"], "runs": ["fomm"]},
    })
    result = _snakemake("reports/table1.html", "-n", "-p", "--cores", "1", "--configfile", config, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    trains = re.findall(r"animbench -v train .*?--out (\S+) --seed (\d+)", result.stdout)
    assert sorted(trains) == [("results/synthetic/fomm-seed0", "0"), ("results/synthetic/fomm-seed3", "3")], result.stdout
    assert "results/synthetic/fomm/" not in result.stdout  # the run with seeds is not itself trained
    # A target of the run itself names its trainings.
    result = _snakemake("results/synthetic/fomm/metrics.csv", "-n", "--cores", "1", "--configfile", config, cwd=tmp_path)
    assert result.returncode != 0 and "its trainings are fomm-seed0, fomm-seed3" in result.stdout + result.stderr


def _fake_seed(dataset, results, run, shift):
    """A trained run whose every frame has L1 = shift + 0.01 * video index."""
    run_dir = results / "synthetic" / run
    rows = []
    for i, video in enumerate(available_videos(dataset, "test")):
        frames = read_video(dataset / "test" / video)
        write_stacked_png(run_dir / "reconstruction" / f"{video}.png", frames)
        rows += [{"video": video, "frame": f, "l1": shift + 0.01 * i} for f in range(len(frames))]
    pd.DataFrame(rows).to_csv(run_dir / "metrics.csv", index=False)
    pd.DataFrame({"video": available_videos(dataset, "test"), "frames": 0, "file": ""}).to_csv(
        run_dir / "reconstruction" / "index.csv", index=False)
    (run_dir / "run.json").write_text(json.dumps({"epochs": 1}))
    return pd.DataFrame(rows)


def test_table1_shows_the_mean_over_seeds_their_spread_and_each_seed(tiny_dataset, tmp_path):
    results = tmp_path / "results"
    seed0 = _fake_seed(tiny_dataset, results, "fomm-seed0", 0.10)
    _fake_seed(tiny_dataset, results, "fomm-seed1", 0.14)
    _fake_seed(tiny_dataset, results, "mraa", 0.30)
    config = {
        "seed": 0,
        "paths": {"datasets": str(tiny_dataset.parent), "results": str(results), "weights": "w"},
        "datasets": {"synthetic": {"builder": "synthetic", "protocol": "l1"}},
        "runs": {"fomm": {"method": "fomm", "seeds": [0, 1]}, "mraa": {"method": "mraa"}},
        "table1": {"datasets": ["synthetic"], "runs": ["fomm", "mraa"]},
        "regression": {"min_effect": {"default": {"rel": 0.01}}},
    }
    html = render_table1(config, tmp_path / "table1.html", REPO).read_text()
    mean = seed0["l1"].mean() + 0.02  # seeds 0.10 and 0.14 apart by a constant 0.04
    row = re.search(r"<tr class=\"ours\"><td class=\"name\">FOMM.*?</tr>", html, flags=re.S).group(0)
    assert f"{mean:.4f}" in row and f"± {0.04 / 2 ** 0.5:.4f}" in row and 'href="#seeds-fomm">mean of 2 seeds' in row
    per_seed = re.search(r'<table id="per-seed">(.*?)</table>', html, flags=re.S).group(1)
    assert 'id="seeds-fomm"' in per_seed and "fomm-seed1" in per_seed
    assert f"{seed0['l1'].mean():.4f}" in per_seed and f"{seed0['l1'].mean() + 0.04:.4f}" in per_seed
    assert "mraa" not in per_seed  # one seed: no per-seed rows
    # The compare page pools the seeds too: FOMM is better than MRAA by exactly 0.18 on every video.
    page = render_compare(config, tmp_path / "compare.html", REPO).read_text()
    assert "−0.18" in page or "-0.18" in page
    # The regression check keeps every seed's per-video values and compares seed by seed set.
    table = collect(config, tmp_path)
    assert set(table["seed"]) == {0, 1} and set(table[table["run"] == "mraa"]["seed"]) == {0}
    stored = read_baseline(write_baseline(table, tmp_path / "baseline.csv"))
    assert set(stored["seed"]) == {0, 1} and set(compare(collect(config, tmp_path), stored, {})["direction"]) == {"identical"}
    # Seed 1 of FOMM worse by 0.03 on every video: its pooled mean moves by 0.015, flagged with
    # a 1 % minimal effect; the seed spread of the baseline (0.04 / sqrt 2) raises the bar above.
    _fake_seed(tiny_dataset, results, "fomm-seed1", 0.17)
    moved = compare(collect(config, tmp_path), stored, {"default": {"rel": 0.01}}).set_index("run")
    assert moved.loc["fomm", "delta"] == pytest.approx(0.015, abs=1e-9)
    assert moved.loc["fomm", "direction"] == "within noise"  # 0.015 < 1.645 * 0.028 * 1 = 0.047
    assert moved.loc["mraa", "direction"] == "identical"


def test_table2_rows_of_a_run_with_seeds_show_the_mean_and_the_spread(tiny_dataset, tmp_path):
    from tests.test_table2 import _fixture_metrics, _row, _setup

    config, repo = _setup(tmp_path, tiny_dataset)
    results = tmp_path / "results" / "synthetic"
    videos = available_videos(tiny_dataset, "test")
    config["runs"]["local"]["seeds"] = [4, 5]
    _fixture_metrics(results / "local-seed4", videos, 0.0100, 1.5)
    _fixture_metrics(results / "local-seed5", videos, 0.0140, 2.0)
    html = render_table2(config, tmp_path / "table2.html", repo).read_text()
    local = _row(html, "+CPAB (local)")
    # Mean 0.0120 of the two seeds, their standard deviation 0.0028; AKD 1.750 +- 0.354.
    assert re.search(r'>0\.0120 <span class="ci">± 0\.0028</span><br><span class="ci">', local), local
    assert "1.750 <span class=\"ci\">± 0.354</span>" in local and 'href="#seeds-local">mean of 2 seeds' in local
    per_seed = re.search(r'<table id="per-seed">(.*?)</table>', html, flags=re.S).group(1)
    assert 'id="seeds-local"' in per_seed and "local-seed5" in per_seed and "0.0140" in per_seed
    # A seed missing its metrics (weights present) is an error naming that seed's file.
    (results / "local-seed5" / "metrics.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"local-seed5/metrics.csv is missing"):
        render_table2(config, tmp_path / "table2.html", repo)
