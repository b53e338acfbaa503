"""Table 1 (video reconstruction): this run's numbers beside the papers'."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from data_prep.io import write_text
from methods.engine.reconstruct import SOURCE_NAME
from metrics.aggregate import frame_weighted, measured_frames, per_video, skipped_frames
from metrics.baseline import RUN_NAME as BASELINE_RUN
from metrics.protocols import get_protocol
from metrics.uncertainty import Interval, compare, intervals
from reports import paper, provenance, run_kinds
from reports.seeds import member_seeds, members
from reports.strips import comparison_strips
from reports.usage import dataset_usage

TEMPLATES = Path(__file__).parent / "templates"
METRIC_KEYS = {"L1": "l1", "AKD": "akd", "MKR": "mkr", "AED": "aed"}
BASELINE_LABEL = "no motion (source frame copied)"


@dataclass
class RunResult:
    dataset: str
    run: str
    frame_weighted: dict[str, float]
    per_video: dict[str, float]
    frames: int
    videos: int
    info: dict[str, Any] = field(default_factory=dict)
    #: metrics.json: protocol, evaluators (backend, version, weights checksum, validation)
    record: dict[str, Any] = field(default_factory=dict)
    measured: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    #: metric -> 95 % bootstrap interval over the test videos (metrics.uncertainty)
    intervals: dict[str, Interval] = field(default_factory=dict)
    #: the per-frame table, for paired comparisons between runs (every seed's frames)
    table: pd.DataFrame | None = field(default=None, repr=False)
    #: a run with several seeds: seed -> (trained run, its frame-weighted means)
    seeds: dict[int, tuple[str, dict[str, float]]] = field(default_factory=dict)
    #: metric -> standard deviation of the frame-weighted means over seeds (only with >= 2 seeds)
    seed_spread: dict[str, float] = field(default_factory=dict)
    #: reconstruction/checkpoint.json: the checkpoint's file, SHA-256 and release name
    checkpoint: dict[str, Any] = field(default_factory=dict)
    #: the evaluation protocol of these numbers ("" when the caller did not say)
    protocol: str = ""


def metrics_dir(results_dir: Path, dataset: str, run: str, extra_protocol: str | None = None) -> Path:
    """Where a run's metrics.csv/metrics.json are: the run folder for the dataset's protocol,
    ``protocols/<name>/`` in it for an extra protocol (datasets.<name>.extra_protocols)."""
    folder = results_dir / dataset / run
    return folder / "protocols" / extra_protocol if extra_protocol else folder


def load_run(
    results_dir: Path, dataset: str, run: str, trained: dict[str, int] | None = None,
    extra_protocol: str | None = None, protocol: str = "",
) -> RunResult:
    """A run's results; ``trained`` (trained run -> seed, :func:`reports.seeds.member_seeds`)
    pools several seeds: their frames together, so that the frame-weighted mean is the mean over
    seeds and the interval resamples videos with every seed's frames of a video kept together.
    ``extra_protocol``: the numbers of that extra protocol (:func:`metrics_dir`); ``protocol``
    labels them (the protocol's name)."""
    trained = trained or {run: None}
    tables, per_seed = [], {}
    for member, seed in trained.items():
        part = pd.read_csv(metrics_dir(results_dir, dataset, member, extra_protocol) / "metrics.csv")
        tables.append(part)
        per_seed[seed] = (member, frame_weighted(part))
    table = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
    run_dir = results_dir / dataset / next(iter(trained))
    info_path = run_dir / "run.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    record_path = metrics_dir(results_dir, dataset, next(iter(trained)), extra_protocol) / "metrics.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    source_path = run_dir / "reconstruction" / SOURCE_NAME
    checkpoint = json.loads(source_path.read_text()) if source_path.exists() else {}
    spread = {}
    if len(per_seed) > 1:
        for metric in METRIC_KEYS.values():
            values = pd.Series([means.get(metric, math.nan) for _, means in per_seed.values()], dtype=float)
            spread[metric] = float(values.std(ddof=1))
    return RunResult(
        dataset=dataset,
        run=run,
        frame_weighted=frame_weighted(table),
        per_video=per_video(table),
        frames=len(table),
        videos=table["video"].nunique(),
        info=info,
        record=record,
        measured=measured_frames(table),
        skipped=skipped_frames(table),
        intervals=intervals(table, list(METRIC_KEYS.values())),
        table=table,
        seeds=per_seed if len(per_seed) > 1 else {},
        seed_spread=spread,
        checkpoint=checkpoint,
        protocol=protocol or extra_protocol or "",
    )


def fmt_metric(value: float | None, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.4f}" if metric in ("L1", "MKR") else f"{value:.3f}"


def fmt_interval(found: Interval | None, metric: str) -> str:
    if found is None or math.isnan(found.low):
        return ""
    return f"{fmt_metric(found.low, metric)}–{fmt_metric(found.high, metric)}"


def best_beyond_noise(results: list[RunResult], dataset: str, metric: str) -> str | None:
    """The run with the lowest ``metric`` on ``dataset`` when the runner-up is worse beyond the
    paired interval of their difference; None when the two best are within noise."""
    measured = [r for r in results if r.dataset == dataset and r.table is not None
                and not math.isnan(r.frame_weighted.get(metric, math.nan))]
    if len(measured) < 2:
        return None
    best, runner_up = sorted(measured, key=lambda r: r.frame_weighted[metric])[:2]
    verdict = compare(best.table, runner_up.table, metric).verdict
    return best.run if verdict == "worse" else None


def _delta(mine: float | None, other: float | str | None, metric: str) -> str:
    """``mine − other`` signed, in the metric's format ("" when either is missing)."""
    try:
        value = float(mine) - float(other)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(value) else ("+" if value >= 0 else "−") + fmt_metric(abs(value), metric)


def build_rows(
    results: list[RunResult],
    datasets: list[str],
    runs: list[str],
    released: dict[str, str] | None = None,
    trained: dict[tuple[str, str], RunResult] | None = None,
) -> list[dict[str, Any]]:
    """One row per method: ours where run, the paper's where reported; the no-motion baseline last of ours.

    ``released``: run -> method of the runs that reconstruct with a released checkpoint; their
    cells also show the paper's number of that method, our training's (``trained``: (method,
    dataset) -> result, where it exists) and the differences, and the checkpoint's digest."""
    released, trained = released or {}, trained or {}
    reference = paper.paper_table1()
    ours_runs = list(runs) + ([BASELINE_RUN] if any(r.run == BASELINE_RUN for r in results) else [])
    methods = ours_runs + [m for m in reference["method"].unique() if m not in {paper.paper_name(r) for r in runs}]
    ours = {(r.run, r.dataset): r for r in results}
    best = {(d, m): best_beyond_noise(results, d, METRIC_KEYS[m]) for d in datasets for m in paper.METRICS}
    rows = []
    for method in methods:
        is_run = method in ours_runs
        if method in released:
            name = paper.paper_name(released[method])
        else:
            name = (BASELINE_LABEL if method == BASELINE_RUN else paper.paper_name(method)) if is_run else method
        cells = []
        for dataset in datasets:
            ref = reference[(reference["method"] == name) & (reference["dataset"] == dataset)]
            result = ours.get((method, dataset))
            for metric in paper.METRICS:
                key = METRIC_KEYS[metric]
                mine = result.frame_weighted.get(key) if result else None
                theirs = ref[metric].iloc[0] if len(ref) else ""
                found = result.intervals.get(key) if result else None
                spread = result.seed_spread.get(key) if result else None
                cell = {"ours": fmt_metric(mine, metric), "interval": fmt_interval(found, metric),
                        "spread": fmt_spread(spread, metric),
                        "best": is_run and best[(dataset, metric)] == method,
                        "paper": theirs or "—", "released": None}
                if method in released and result is not None:
                    ours_trained = trained.get((released[method], dataset))
                    value = ours_trained.frame_weighted.get(key) if ours_trained else None
                    cell["released"] = {
                        "paper_delta": _delta(mine, theirs, metric),
                        "trained": fmt_metric(value, metric) if ours_trained else "",
                        "trained_delta": _delta(mine, value, metric),
                        "digest": str(result.checkpoint.get("sha256", ""))[:12],
                        "release": result.checkpoint.get("release") or result.checkpoint.get("file", ""),
                    }
                cells.append(cell)
        seeds = sorted({seed for (run, _), r in ours.items() if run == method for seed in r.seeds})
        label = f"{name} — released checkpoint" if method in released else (name or method)
        rows.append({"method": method, "label": label, "is_run": is_run, "cells": cells, "seeds": seeds})
    return rows


def fmt_spread(value: float | None, metric: str) -> str:
    """``± sd`` of a run's seeds ("" for one seed)."""
    if value is None or math.isnan(value):
        return ""
    return f"± {fmt_metric(value, metric)}"


def seed_rows(results: list[RunResult], datasets: list[str]) -> list[dict[str, Any]]:
    """Per run with several seeds, one row per seed: its frame-weighted means on each dataset."""
    rows = []
    runs = list(dict.fromkeys(r.run for r in results if r.seeds))
    for run in runs:
        by_dataset = {r.dataset: r for r in results if r.run == run}
        seeds = sorted({seed for r in by_dataset.values() for seed in r.seeds})
        for seed in seeds:
            cells = []
            for dataset in datasets:
                found = by_dataset.get(dataset)
                trained, means = found.seeds.get(seed, ("", {})) if found else ("", {})
                cells += [fmt_metric(means.get(METRIC_KEYS[m]), m) if found else "" for m in paper.METRICS]
            rows.append({"run": run, "seed": seed, "trained": trained, "cells": cells})
    return rows


def evaluator_rows(results: list[RunResult]) -> list[dict[str, Any]]:
    """One row per (dataset, evaluator) as recorded by evaluation, with validation figures if trained here.

    Every run of a dataset must have been measured by the same evaluator weights; a mismatch is an
    error (the numbers of the table would not be comparable).
    """
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for result in results:
        for kind, entry in result.record.get("evaluators", {}).items():
            key = (result.dataset, result.protocol, kind)
            if key in rows and rows[key]["weights_sha256"] != entry["weights_sha256"]:
                raise ValueError(
                    f"{result.dataset}: run {result.run} was measured with other {kind} evaluator weights "
                    f"({entry['weights_sha256'][:12]}) than {rows[key]['runs'][0]} ({rows[key]['weights_sha256'][:12]}); re-evaluate"
                )
            rows.setdefault(key, {"dataset": result.dataset, "protocol": result.protocol, "kind": kind, **entry,
                                  "runs": []})["runs"].append(result.run)
    return list(rows.values())


def protocol_sections(config: dict[str, Any], datasets: list[str]) -> list[dict[str, str | None]]:
    """Table 1's sections: the first measures every dataset with its protocol (value None: the
    run folder's metrics.csv); section k with each dataset's k-th extra protocol (a dataset with
    fewer extra protocols is left out of that section)."""
    extras = {d: config["datasets"][d].get("extra_protocols", []) for d in datasets}
    depth = max((len(e) for e in extras.values()), default=0)
    sections: list[dict[str, str | None]] = [dict.fromkeys(datasets)]
    for k in range(depth):
        sections.append({d: e[k] for d, e in extras.items() if len(e) > k})
    return sections


def _section(
    config: dict[str, Any], results_dir: Path, runs: list[str], datasets: list[str],
    measured: dict[str, str | None], released: dict[str, str],
) -> dict[str, Any]:
    """One section of Table 1: the rows of ``runs`` on the datasets of ``measured`` (dataset ->
    extra protocol, or None for the dataset's own), with the released rows (``released``: run ->
    method) beside their trained neighbours."""
    names = {d: p or config["datasets"][d]["protocol"] for d, p in measured.items()}

    def load(dataset: str, run: str, trained: dict[str, int] | None = None) -> RunResult:
        return load_run(results_dir, dataset, run, trained, measured[dataset], names[dataset])

    def exists(dataset: str, run: str) -> bool:
        return (metrics_dir(results_dir, dataset, run, measured[dataset]) / "metrics.csv").is_file()

    results = [load(d, r, member_seeds(config, r)) for d in measured for r in runs
               if run_kinds.applies(config, r, d)]
    # Released checkpoints are set beside our training of the same method where it exists
    # (paper.yaml's run named after the method, in the same results folder).
    loaded = {(r.run, r.dataset): r for r in results}
    trained = {
        (method, d): loaded.get((method, d)) or load(d, method)
        for method in set(released.values()) for d in measured
        if (method, d) in loaded or exists(d, method)
    }
    # The no-motion row is shown wherever its metrics exist (the DAG always makes them).
    results += [load(d, BASELINE_RUN) for d in measured if exists(d, BASELINE_RUN)]
    return {
        "protocols": names,
        "rows": build_rows(results, datasets, runs, released, trained),
        "seed_rows": seed_rows(results, list(measured)),
        "results": results,
        "evaluators": evaluator_rows(results),
    }


def render_table1(config: dict[str, Any], out: Path, repo: Path, config_name: str = "") -> Path:
    """Render ``out`` from the workflow config's ``table1`` section and the results on disk."""
    paths = config["paths"]
    datasets_dir, results_dir = Path(paths["datasets"]), Path(paths["results"])
    table = config["table1"]
    run_datasets, runs = table["datasets"], table["runs"]
    reference = paper.paper_table1()
    datasets = list(run_datasets) + [d for d in reference["dataset"].unique() if d not in run_datasets]
    released = {r: config["runs"][r]["method"] for r in runs if run_kinds.is_released(config, r)}
    sections = [_section(config, results_dir, runs, datasets, measured, released)
                for measured in protocol_sections(config, run_datasets)]

    usage = {d: dataset_usage(datasets_dir / d) for d in run_datasets}
    pictures = []
    for dataset in run_datasets:
        # A run with seeds is pictured by its first seed's reconstruction.
        shown = {r: members(config, r)[0] for r in runs if run_kinds.applies(config, r, dataset)}
        index = pd.read_csv(results_dir / dataset / next(iter(shown.values())) / "reconstruction" / "index.csv")
        video = str(index["video"].iloc[0])
        truth, strips, frames = comparison_strips(
            datasets_dir / dataset / "test" / video,
            {r: results_dir / dataset / m / "reconstruction" / f"{video}.png" for r, m in shown.items()},
        )
        pictures.append({"dataset": dataset, "video": video, "frames": frames, "truth": truth, "runs": strips})

    protocols = {d: config["datasets"][d]["protocol"] for d in run_datasets}
    extra = {d: [get_protocol(p) for p in config["datasets"][d].get("extra_protocols", [])] for d in run_datasets}
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, autoescape=True)
    html = env.get_template("table1.html.j2").render(
        title="Table 1 — video reconstruction",
        datasets=datasets,
        run_datasets=run_datasets,
        metrics=paper.METRICS,
        sections=sections,
        released=released,
        results=[r for s in sections for r in s["results"]],
        usage=usage,
        pictures=pictures,
        protocols={d: get_protocol(p) for d, p in protocols.items()},
        extra_protocols=extra,
        evaluators=[e for s in sections for e in s["evaluators"]],
        metric_keys=[METRIC_KEYS[m] for m in paper.METRICS],
        **provenance.page_context(config, config_name, repo),
    )
    write_text(out, html)
    return out
