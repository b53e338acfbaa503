"""reports/compare.html: the pairwise matrix of Table 1's runs, with per-video pictures."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from animbench.cli import main
from reports.compare import comparison_matrix, render_compare
from tests.conftest import REPO


def _metrics(videos: int, shift: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [{"video": f"v{v}", "frame": f, "l1": 0.05 + 0.01 * rng.standard_normal() + shift, "akd": 2.0 + shift}
            for v in range(videos) for f in range(8)]
    return pd.DataFrame(rows)


def _config(tmp_path):
    results = tmp_path / "results"
    for run, shift in (("fomm", 0.0), ("tpsmm", 0.01), ("no-motion", 0.05)):
        (results / "synthetic" / run).mkdir(parents=True)
        _metrics(10, shift).to_csv(results / "synthetic" / run / "metrics.csv", index=False)
    return {
        "seed": 0,
        "paths": {"datasets": str(tmp_path / "datasets"), "results": str(results), "weights": "w"},
        "datasets": {"synthetic": {"builder": "synthetic", "protocol": "l1"}},
        "runs": {"fomm": {"method": "fomm"}, "tpsmm": {"method": "tpsmm"}},
        "table1": {"datasets": ["synthetic"], "runs": ["fomm", "tpsmm"]},
    }


def test_the_matrix_says_column_minus_row_and_its_verdict():
    tables = {"a": _metrics(10, 0.0), "b": _metrics(10, 0.01), "c": _metrics(10, 0.0)}
    rows = {row["run"]: row["cells"] for row in comparison_matrix(tables, "l1", "L1")}
    assert rows["a"][0]["verdict"] == "self"
    assert rows["a"][1]["verdict"] == "worse" and rows["a"][1]["text"] == "+0.01"  # b - a
    assert rows["b"][0]["verdict"] == "better"
    assert rows["a"][2]["verdict"] == "within noise" and rows["a"][2]["text"] == "+0"  # same frames


def test_the_page_shows_every_pair_and_a_picture_per_metric(tmp_path, capsys):
    config = _config(tmp_path)
    html = render_compare(config, tmp_path / "compare.html", REPO, config_name="c.yaml").read_text()
    assert "synthetic — 10 test videos" in html
    assert html.count("data:image/png;base64,") == 2  # L1 and AKD
    assert len(re.findall(r'<td class="worse">', html)) == 6  # per metric: tpsmm>fomm, no-motion>both
    assert len(re.findall(r'<td class="better">', html)) == 6
    # The command the rule runs writes the same page.
    out = tmp_path / "cli.html"
    assert main(["report", "compare", "--config-json", json.dumps(config), "--out", str(out)]) == 0
    assert out.is_file() and "beyond noise" in out.read_text()
