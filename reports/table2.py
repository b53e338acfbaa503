"""Table 2 (ablations): the CPAB paper's Table 2 and TPSMM's Table 4, this run's numbers beside theirs.

The workflow config's ``table2:`` section names the dataset and, for every row of the two papers'
tables, the run that reproduces it (row ids below; a row left out of the config is shown as not
configured). A run whose pretrained weights this machine lacks is not trained by the workflow
(see ``workflow/rules/report_helpers.smk``) and its row says so, with the file and the command
that fetches it: never numbers from a substitute.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from data_prep.io import write_text
from methods.engine.required_weights import run_missing_weights
from metrics.baseline import RUN_NAME as BASELINE_RUN
from metrics.protocols import get_protocol
from reports import paper, provenance
from reports.seeds import member_seeds
from reports.table1 import (
    BASELINE_LABEL,
    METRIC_KEYS,
    RunResult,
    evaluator_rows,
    fmt_interval,
    fmt_metric,
    fmt_spread,
    load_run,
    seed_rows,
)
from reports.usage import dataset_usage

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Row:
    id: str  # key in the workflow config's table2 section
    label: str  # shown on the page
    paper_variant: str | None  # the row's name in the paper's CSV; None: the paper has no such row


#: CPAB paper, Table 2 (TaiChiHD): components added to TPSMM in turn, plus the authors' release fit.
CPAB_ROWS = (
    Row("tpsmm", "TPSMM", "TPSMM"),
    Row("cpab_local", "+CPAB (local)", "+CPAB (10 local CPAB, 4x4 tessellation)"),
    Row("cpab_global", "+CPAB+Global", "+CPAB+Global (extra 6x6 global CPAB)"),
    Row("keypoint_semantic", "+CPAB+Global+L_KS", "+CPAB+Global+L_KS (SAM keypoint semantic loss)"),
    Row("structure", "+CPAB+Global+L_struc", "+CPAB+Global+L_struc (DINO structure loss)"),
    Row("full", "full model", "full model"),
    Row("release", "full, release fit (adam, detached)", None),
)
#: TPSMM paper, Table 4 (TaiChiHD): parts of TPSMM added in turn, MRAA for reference.
TPSMM_ROWS = (
    Row("mraa", "MRAA", "MRAA"),
    Row("tps_only", "TPS", "TPS"),
    Row("dropout", "+Dropout", "+Dropout"),
    Row("multi_mask", "+Multi-Masks", "+Multi-Masks"),
    Row("bg_loss", "+L_bg", "+L_bg"),
    Row("warp_loss", "+L_warp", "+L_warp"),
)
SECTIONS = (
    ("cpab", "CPAB paper, Table 2 — ablation on TaiChiHD", CPAB_ROWS),
    ("tpsmm", "TPSMM paper, Table 4 — ablation on TaiChiHD", TPSMM_ROWS),
)


def paper_numbers(section: str) -> dict[str, dict[str, str]]:
    """variant -> metric -> the number as printed (strings), for ``cpab`` (Table 2) or ``tpsmm`` (Table 4)."""
    if section == "cpab":
        table = _read_variant_csv(paper.DATA / "paper_table2.csv")
    else:
        table = _read_variant_csv(paper.DATA / "tpsmm_tables.csv")
        table = table[table["table"] == "4"]
    return {row["variant"]: {m: row[m] for m in paper.METRICS} for _, row in table.iterrows()}


def _read_variant_csv(path: Path) -> pd.DataFrame:
    """A paper table whose ``variant`` names may hold unquoted commas ("10 local CPAB, 4x4 ...").

    The numbers are the last four fields of every line, so each line is split from the right."""
    lines = [
        line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    header = lines[0].split(",")
    rows = [line.rsplit(",", len(header) - 1 - header.index("variant")) for line in lines[1:]]
    # Fields before `variant` (e.g. `table`) contain no commas: split them off from the left.
    rows = [row[0].split(",", header.index("variant")) + row[1:] for row in rows]
    return pd.DataFrame(rows, columns=header, dtype=str)


def table2_runs(config: dict[str, Any]) -> list[str]:
    """Every run the ``table2`` section names, each once, in page order."""
    section = config["table2"]
    names: list[str] = []
    for key, _, rows in SECTIONS:
        for row in rows:
            run = section.get(key, {}).get(row.id)
            if run is not None and run not in names:
                names.append(run)
    return names


def runs_to_train(config: dict[str, Any], repo: Path) -> list[str]:
    """The ``table2`` runs whose weights are all present: what the workflow trains for the page."""
    dataset = config["table2"]["dataset"]
    return [
        run for run in table2_runs(config) if not run_missing_weights(config, run, dataset, repo)
    ]


def _status(
    config: dict[str, Any], run: str, dataset: str, results_dir: Path, repo: Path
) -> tuple[RunResult | None, str]:
    """(result, "") for a measured run; (None, why not) for a run not trained for lack of weights."""
    trained = member_seeds(config, run)
    absent = [results_dir / dataset / m / "metrics.csv" for m in trained if not (results_dir / dataset / m / "metrics.csv").is_file()]
    if not absent:
        return load_run(results_dir, dataset, run, trained), ""
    missing = run_missing_weights(config, run, dataset, repo)
    if missing:
        return None, "not run: " + "; ".join(m.reason() for m in missing)
    raise FileNotFoundError(
        f"{absent[0]} is missing although run {run!r} has all its weights; "
        "run `snakemake reports/table2.html` (it trains, reconstructs and evaluates the run first)"
    )


def build_section(
    config: dict[str, Any], key: str, rows: tuple[Row, ...], results_dir: Path, repo: Path
) -> dict[str, Any]:
    """Rows of one table: ours (or why not) beside the paper's, then the no-motion baseline."""
    dataset = config["table2"]["dataset"]
    mapping = config["table2"].get(key, {})
    reference = paper_numbers(key)
    out_rows, results = [], []
    for row in rows:
        theirs = reference.get(row.paper_variant, {}) if row.paper_variant else {}
        run = mapping.get(row.id)
        result, why = (
            None,
            "not configured: no run named for this row in the config's table2 section",
        )
        if run is not None:
            result, why = _status(config, run, dataset, results_dir, repo)
        if result is not None:
            results.append(result)
        cells = [
            {
                "ours": fmt_metric(result.frame_weighted.get(METRIC_KEYS[m]), m) if result else "",
                "interval": fmt_interval(result.intervals.get(METRIC_KEYS[m]), m) if result else "",
                "spread": fmt_spread(result.seed_spread.get(METRIC_KEYS[m]), m) if result else "",
                "paper": theirs.get(m) or "—",
            }
            for m in paper.METRICS
        ]
        out_rows.append(
            {
                "label": row.label,
                "run": run,
                "is_run": result is not None,
                "why": why,
                "cells": cells,
                "seeds": sorted(result.seeds) if result else [],
            }
        )
    baseline_path = results_dir / dataset / BASELINE_RUN / "metrics.csv"
    if baseline_path.is_file():
        base = load_run(results_dir, dataset, BASELINE_RUN)
        results.append(base)
        cells = [
            {"ours": fmt_metric(base.frame_weighted.get(METRIC_KEYS[m]), m),
             "interval": fmt_interval(base.intervals.get(METRIC_KEYS[m]), m), "paper": "—"}
            for m in paper.METRICS
        ]
        out_rows.append(
            {
                "label": BASELINE_LABEL,
                "run": BASELINE_RUN,
                "is_run": True,
                "why": "",
                "cells": cells,
                "seeds": [],
            }
        )
    return {"key": key, "rows": out_rows, "results": results}


def render_table2(config: dict[str, Any], out: Path, repo: Path, config_name: str = "") -> Path:
    """Render ``out`` from the workflow config's ``table2`` section and the results on disk."""
    paths = config["paths"]
    datasets_dir, results_dir = Path(paths["datasets"]), Path(paths["results"])
    dataset = config["table2"]["dataset"]
    sections = []
    for key, title, rows in SECTIONS:
        sections.append({"title": title, **build_section(config, key, rows, results_dir, repo)})
    # Each run once in the runs and evaluator tables, though it may fill a row of both sections.
    seen: dict[str, RunResult] = {}
    for section in sections:
        for result in section["results"]:
            seen.setdefault(result.run, result)
    results = list(seen.values())
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, autoescape=True
    )
    html = env.get_template("table2.html.j2").render(
        title="Table 2 — ablations",
        dataset=dataset,
        note=config["table2"].get("note", ""),
        sections=sections,
        metrics=paper.METRICS,
        results=results,
        seed_rows=seed_rows(results, [dataset]),
        usage=dataset_usage(datasets_dir / dataset),
        protocol=get_protocol(config["datasets"][dataset]["protocol"]),
        evaluators=evaluator_rows(results),
        metric_keys=[METRIC_KEYS[m] for m in paper.METRICS],
        **provenance.page_context(config, config_name, repo),
    )
    write_text(out, html)
    return out
