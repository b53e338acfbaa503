"""The comparison page: which differences between Table 1's runs are beyond noise.

For each dataset and metric, a matrix of paired comparisons (``metrics.uncertainty.compare``:
column run minus row run, on the test videos both measured, its 95 % interval and the verdict),
and a picture of the per-video means of every run (a strip plot with each run's frame-weighted
mean and interval), because people would rather look than read.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from data_prep.io import write_text
from metrics.baseline import RUN_NAME as BASELINE_RUN
from metrics.uncertainty import Comparison, compare, interval, video_sums
from reports import provenance, run_kinds
from reports.seeds import members
from reports.table1 import METRIC_KEYS, fmt_metric

TEMPLATES = Path(__file__).parent / "templates"


def _strip_plot(tables: dict[str, pd.DataFrame], metric: str, label: str) -> str:
    """A PNG data URI: per-video means of each run (dots) and its mean with interval (bar)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(1.2 + 1.1 * len(tables), 2.6), dpi=100)
    jitter = np.random.default_rng(0)
    for x, table in enumerate(tables.values()):
        sums = video_sums(table, metric)
        if sums.empty:
            continue
        means = (sums["sum"] / sums["count"]).to_numpy()
        axis.scatter(x + jitter.uniform(-0.15, 0.15, len(means)), means, s=12, alpha=0.6, color="#4477aa")
        found = interval(table, metric)
        axis.errorbar([x + 0.3], [found.estimate], yerr=[[found.estimate - found.low], [found.high - found.estimate]],
                      fmt="o", color="#aa3377", capsize=3, markersize=4)
    axis.set_xticks(range(len(tables)), list(tables), rotation=20, fontsize=8)
    axis.set_ylabel(f"{label} per video", fontsize=8)
    axis.tick_params(axis="y", labelsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def comparison_matrix(tables: dict[str, pd.DataFrame], metric: str, label: str) -> list[dict[str, Any]]:
    """Rows of the matrix: for row run ``a`` and column run ``b``, ``b - a`` and its verdict.

    Each pair is bootstrapped once; its mirror cell is the same comparison swapped."""
    runs = list(tables)
    found: dict[tuple[str, str], Comparison] = {}
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            found[a, b] = compare(tables[a], tables[b], metric)
            found[b, a] = found[a, b].swapped()
    rows = []
    for a in runs:
        cells = []
        for b in runs:
            if a == b:
                cells.append({"text": "—", "verdict": "self"})
                continue
            result = found[a, b]
            cells.append({
                "text": f"{result.difference:+.4g}",
                "interval": f"{fmt_metric(result.low, label)} … {fmt_metric(result.high, label)}",
                "verdict": result.verdict,
                "p": f"{result.wilcoxon_p:.2g}",
            })
        rows.append({"run": a, "cells": cells})
    return rows


def render_compare(config: dict[str, Any], out: Path, repo: Path, config_name: str = "") -> Path:
    """Render ``out`` for the runs of the workflow config's ``table1`` section (and no-motion)."""
    results_dir = Path(config["paths"]["results"])
    sections = []
    for dataset in config["table1"]["datasets"]:
        runs = [r for r in config["table1"]["runs"] if run_kinds.applies(config, r, dataset)]
        if (results_dir / dataset / BASELINE_RUN / "metrics.csv").is_file():
            runs.append(BASELINE_RUN)
        # A run with several seeds compares with every seed's frames pooled (as Table 1 shows it).
        tables = {
            run: pd.concat([pd.read_csv(results_dir / dataset / m / "metrics.csv") for m in members(config, run)],
                           ignore_index=True)
            for run in runs
        }
        metrics = []
        for label, key in METRIC_KEYS.items():
            if not all(key in t.columns and t[key].notna().any() for t in tables.values()):
                continue
            metrics.append({"label": label, "runs": list(tables),
                            "matrix": comparison_matrix(tables, key, label),
                            "plot": _strip_plot(tables, key, label)})
        videos = sorted(set.intersection(*(set(t["video"]) for t in tables.values())))
        sections.append({"dataset": dataset, "videos": len(videos), "metrics": metrics})
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, autoescape=True)
    html = env.get_template("compare.html.j2").render(
        title="Comparisons — which differences are beyond noise",
        sections=sections,
        **provenance.page_context(config, config_name, repo),
    )
    write_text(out, html)
    return out
