"""The page a user opens first: links to every report, training curves, and what each job cost.

``reports/index.html`` links Table 1, Table 2 and the regression page (those that exist), shows
the loss-per-epoch curve of every run (``reports/curves/{dataset}/{run}.png``, from its
``train_log.csv``) and one row per Snakemake job from its ``benchmark:`` file: wall time, CPU
time, peak memory (max RSS) and the device it ran on.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from data_prep.io import atomic_path
from reports import provenance, run_kinds
from reports.curves import plot_training_curves
from reports.seeds import members

#: Reports the index links when they exist, in this order: (file name, title).
PAGES = (
    ("table1.html", "Table 1: reconstruction on each dataset"),
    ("table2.html", "Table 2: animation and ablations"),
    ("compare.html", "Comparisons: which differences between Table 1's runs are beyond noise"),
    ("regression.html", "Regression check against the committed baseline"),
)
_DEVICE_LINE = re.compile(r"\bdevice\b[\s:=]+\"?(cuda(?::\d+)?|cpu|mps)\b", re.IGNORECASE)


def curve_path(reports_dir: Path, dataset: str, run: str) -> Path:
    return reports_dir / "curves" / dataset / f"{run}.png"


def job_device(root: Path, benchmark: Path, benchmarks_dir: Path, results_dir: str) -> str:
    """Where the job ran: run.json of a training job, else a `device` line in the job's log."""
    relative = benchmark.relative_to(benchmarks_dir).with_suffix("")
    parts = relative.parts
    if parts[0] == "train" and len(parts) == 3:
        info = root / results_dir / parts[1] / parts[2] / "run.json"
        if info.is_file():
            record = json.loads(info.read_text())
            device = str(record.get("device", "?"))
            processes = int(record.get("processes", 1) or 1)
            return device + (f" × {processes} processes" if processes > 1 else "")
    log = root / "logs" / relative.with_suffix(".log")
    if log.is_file():
        found = _DEVICE_LINE.search(log.read_text(errors="replace"))
        if found:
            return found.group(1).lower()
    return "cpu" if parts[0] in ("prepare", "report", "baseline") else "—"


def _number(row: pd.Series, key: str) -> float:
    # Snakemake writes "NA" where it could not measure (e.g. a job too short to sample).
    value = pd.to_numeric(row.get(key), errors="coerce")
    return float(value) if value is not None and not math.isnan(value) else math.nan


def job_rows(root: Path, results_dir: str) -> list[dict[str, Any]]:
    """One row per benchmark file (Snakemake's `benchmark:`; `s` wall seconds, `max_rss` MB)."""
    benchmarks_dir = root / "benchmarks"
    rows = []
    for path in sorted(benchmarks_dir.rglob("*.tsv")):
        try:
            table = pd.read_csv(path, sep="\t")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            continue  # a benchmark being written right now
        if table.empty:
            continue
        last = table.iloc[-1]
        relative = path.relative_to(benchmarks_dir).with_suffix("")

        rows.append({
            "rule": relative.parts[0],
            "job": "/".join(relative.parts[1:]),
            "seconds": _number(last, "s"),
            "cpu_seconds": _number(last, "cpu_time"),
            "max_rss_mb": _number(last, "max_rss"),
            "device": job_device(root, path, benchmarks_dir, results_dir),
        })
    return rows


def render_index(config: dict[str, Any], out: Path, repo: Path, root: Path, config_name: str = "") -> Path:
    """Write ``out`` (reports/index.html) and the curve PNGs beside it."""
    reports_dir = out.parent
    runs = []
    for dataset in config["table1"]["datasets"]:
        # Runs trained here (a released checkpoint has no training log).
        for run, trained in ((r, m) for r in run_kinds.trained(config, config["table1"]["runs"]) for m in members(config, r)):
            run_dir = root / config["paths"]["results"] / dataset / trained
            entry: dict[str, Any] = {"dataset": dataset, "run": trained, "method": config["runs"][run]["method"]}
            log = run_dir / "train_log.csv"
            if log.is_file():
                png = plot_training_curves(log, curve_path(reports_dir, dataset, trained), title=f"{trained} on {dataset}")
                entry["curve"] = os.path.relpath(png, reports_dir)
                info = run_dir / "run.json"
                entry["info"] = json.loads(info.read_text()) if info.is_file() else {}
            runs.append(entry)
    pages = [{"href": name, "title": title} for name, title in PAGES if (reports_dir / name).is_file()]
    jobs = job_rows(root, config["paths"]["results"])
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
    )
    html = env.get_template("index.html.j2").render(
        pages=pages, runs=runs, jobs=jobs,
        total_seconds=sum(j["seconds"] for j in jobs if not math.isnan(j["seconds"])),
        config_name=config_name, commit=provenance.git_commit(repo), generated=provenance.now(),
        versions=provenance.versions(),
        num=lambda v, digits=1: "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.{digits}f}",
    )
    with atomic_path(out) as tmp:
        tmp.write_text(html)
    return out
