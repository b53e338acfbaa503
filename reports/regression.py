"""Regression checks: this run's metrics against a committed baseline, per-metric tolerances.

A baseline (``workflow/baselines/{name}.csv``, written by ``animbench baseline update``) holds one
row per dataset, run and metric: the frame-weighted mean the report shows. The check compares
the current means with it; a metric *moved* when ``|delta| > abs + rel * |baseline|`` (its
tolerance from the workflow config), and *regressed* when it moved in the worse direction.
Metric columns are taken generically from ``metrics.aggregate`` (L1, AKD, MKR, AED, whatever the
protocol measured).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from data_prep.io import atomic_path
from metrics.aggregate import frame_weighted
from reports import provenance

BASELINE_COLUMNS = ["dataset", "run", "method", "metric", "value", "frames"]
DEFAULT_TOLERANCE = {"abs": 0.0, "rel": 0.0, "better": "lower"}


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """The config's `regression` section with its defaults (table1's datasets and runs)."""
    section = config.get("regression") or {}
    return {
        "baseline": section.get("baseline", "default"),
        "datasets": section.get("datasets", config["table1"]["datasets"]),
        "runs": section.get("runs", config["table1"]["runs"]),
        "tolerances": section.get("tolerances", {}),
    }


def baseline_path(config: dict[str, Any], repo: Path) -> Path:
    return repo / "workflow/baselines" / f"{settings(config)['baseline']}.csv"


def collect(config: dict[str, Any], root: Path) -> pd.DataFrame:
    """Frame-weighted mean of every metric of every (dataset, run) the check covers."""
    chosen = settings(config)
    rows = []
    for dataset in chosen["datasets"]:
        for run in chosen["runs"]:
            path = root / config["paths"]["results"] / dataset / run / "metrics.csv"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no metrics for run {run!r} on {dataset!r}; run the workflow first")
            table = pd.read_csv(path)
            for metric, value in frame_weighted(table).items():
                rows.append({
                    "dataset": dataset, "run": run, "method": config["runs"].get(run, {}).get("method", run),
                    "metric": metric, "value": value, "frames": int(table[metric].notna().sum()),
                })
    return pd.DataFrame(rows, columns=BASELINE_COLUMNS)


def write_baseline(table: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        # repr precision: the tiny CPU baseline is reproduced exactly, so do not round it away.
        table.sort_values(["dataset", "run", "metric"]).to_csv(tmp, index=False, float_format="%.17g")
    return path


def read_baseline(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no baseline; write one from a trusted run with `animbench baseline update`"
        )
    table = pd.read_csv(path)
    missing = [c for c in BASELINE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: not a baseline (missing columns {', '.join(missing)}); rewrite it with `animbench baseline update`")
    return table


def tolerance(tolerances: dict[str, Any], metric: str) -> dict[str, Any]:
    return {**DEFAULT_TOLERANCE, **tolerances.get("default", {}), **tolerances.get(metric, {})}


def compare(current: pd.DataFrame, baseline: pd.DataFrame, tolerances: dict[str, Any]) -> pd.DataFrame:
    """One row per (dataset, run, metric) in either table: delta, direction, beyond tolerance."""
    keys = ["dataset", "run", "metric"]
    merged = current.merge(baseline, on=keys, how="outer", suffixes=("", "_baseline"), indicator=True)
    rows = []
    for row in merged.to_dict("records"):
        tol = tolerance(tolerances, row["metric"])
        method = row["method"] if isinstance(row["method"], str) else row["method_baseline"]
        out = {k: row[k] for k in keys} | {"method": method, "current": row["value"], "baseline": row["value_baseline"]}
        if row["_merge"] != "both":
            # A metric or run that appeared or vanished is a change the baseline must record.
            status = "new (not in baseline)" if row["_merge"] == "left_only" else "missing (in baseline only)"
            out |= {"delta": math.nan, "direction": status, "allowed": math.nan, "beyond": True, "regressed": True}
        else:
            delta = float(row["value"] - row["value_baseline"])
            allowed = float(tol["abs"] + tol["rel"] * abs(row["value_baseline"]))
            if math.isnan(delta):
                beyond, direction = not (math.isnan(row["value"]) and math.isnan(row["value_baseline"])), "n/a"
            else:
                beyond = abs(delta) > allowed
                worse = delta > 0 if tol["better"] == "lower" else delta < 0
                direction = "unchanged" if delta == 0 else ("worse" if worse else "better")
            out |= {
                "delta": delta, "direction": direction, "allowed": allowed, "beyond": beyond,
                "regressed": beyond and direction in ("worse", "n/a"),
            }
        rows.append(out)
    columns = ["dataset", "run", "method", "metric", "baseline", "current", "delta", "direction", "allowed", "beyond", "regressed"]
    return pd.DataFrame(rows, columns=columns).sort_values(keys).reset_index(drop=True)


def summary_line(comparison: pd.DataFrame) -> str:
    bad = comparison[comparison["regressed"]]
    if bad.empty:
        moved = int(comparison["beyond"].sum())
        return f"regression check passed: {len(comparison)} metrics, {moved} improved beyond tolerance"
    items = "; ".join(
        f"{r.run}/{r.dataset} {r.metric} {r.direction}" + ("" if math.isnan(r.delta) else f" ({r.delta:+.4g}, allowed {r.allowed:.4g})")
        for r in bad.itertuples()
    )
    return f"regression check failed: {len(bad)} of {len(comparison)} metrics: {items}"


def render_regression(
    config: dict[str, Any], out: Path, repo: Path, root: Path, config_name: str = ""
) -> tuple[Path, pd.DataFrame]:
    """Write the regression page; return it and the comparison (``regressed`` column)."""
    chosen = settings(config)
    path = baseline_path(config, repo)
    comparison = compare(collect(config, root), read_baseline(path), chosen["tolerances"])
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
    )
    html = env.get_template("regression.html.j2").render(
        rows=comparison.to_dict("records"),
        summary=summary_line(comparison),
        failed=bool(comparison["regressed"].any()),
        baseline=str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path),
        tolerances={m: tolerance(chosen["tolerances"], m) for m in sorted(set(comparison["metric"]))},
        config_name=config_name,
        commit=provenance.git_commit(repo),
        generated=provenance.now(),
        fmt=lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}",
        signed=lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.3g}",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(html)
    return out, comparison
