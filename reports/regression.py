"""Regression checks: this run's metrics against a committed baseline, video by video.

A baseline (``workflow/baselines/{name}.csv``, written by ``animbench baseline update``) holds,
per dataset, trained run (one per seed, :mod:`reports.seeds`), metric and test video, the sum
of the metric over the video's measured frames and their count: enough to recompute the
frame-weighted mean the report shows and to compare a new run with it video by video.

Per (dataset, run, metric) the check says:

- *identical*: every video's sum and count equal the baseline's exactly (a bit-identical
  rerun, e.g. CPU training with the same seed): passes, no statistics needed.
- *worse* (regressed) / *better*: the paired 95 % bootstrap interval of (this run - baseline)
  over the test videos (:func:`metrics.uncertainty.compare_sums`, seeds pooled per video) lies
  entirely on that side of 0, and the difference exceeds the minimal effect: ``abs + rel *
  |baseline|`` from the config's ``regression.min_effect``, and, when the baseline was run with
  several seeds, the seed noise: 1.645 x their spread (the standard deviation of the seeds'
  means) x sqrt(1/k + 1/k_baseline) for k seeds here, the difference two sets of trainings that
  differ only in their random streams stay below 95 % of the time (:func:`seed_noise`).
- *within noise*: anything else.
- a run or metric that appeared or vanished regresses, and so does a test video measured on one
  side only (the means would be over other videos): the baseline must record it.

A run trained with other seeds than the baseline's is compared all the same (the page says so):
another random stream is exactly the noise the minimal effect and the seed spread absorb.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from data_prep.io import atomic_path
from metrics.aggregate import frame_weighted
from metrics.uncertainty import CONFIDENCE, compare_sums, video_sums
from reports import provenance, run_kinds
from reports.seeds import member_seeds

BASELINE_COLUMNS = ["dataset", "run", "method", "seed", "metric", "video", "sum", "frames"]
DEFAULT_EFFECT = {"abs": 0.0, "rel": 0.0, "better": "lower"}
KEYS = ["dataset", "run", "metric"]
#: one-sided 95 % normal quantile: a reseed exceeds the seed-noise bound 5 % of the time
SEED_NOISE_Z = 1.645
RESULT_COLUMNS = [
    "dataset", "run", "method", "metric", "baseline", "current", "delta", "low", "high", "videos",
    "wilcoxon_p", "seed_spread", "seeds", "min_effect", "direction", "regressed",
]


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """The config's `regression` section with its defaults (table1's datasets and runs)."""
    section = config.get("regression") or {}
    return {
        "baseline": section.get("baseline", "default"),
        "datasets": section.get("datasets", config["table1"]["datasets"]),
        "runs": section.get("runs", config["table1"]["runs"]),
        "min_effect": section.get("min_effect", {}),
    }


def baseline_path(config: dict[str, Any], repo: Path) -> Path:
    return repo / "workflow/baselines" / f"{settings(config)['baseline']}.csv"


def collect(config: dict[str, Any], root: Path) -> pd.DataFrame:
    """Per-video sums and frame counts of every metric of every (dataset, run, seed) checked."""
    chosen = settings(config)
    rows = []
    for dataset in chosen["datasets"]:
        # A released run mapped to some datasets has no result on the others.
        for run in (r for r in chosen["runs"] if run_kinds.applies(config, r, dataset)):
            method = config["runs"].get(run, {}).get("method", run)
            for trained, seed in member_seeds(config, run).items():
                path = root / config["paths"]["results"] / dataset / trained / "metrics.csv"
                if not path.is_file():
                    raise FileNotFoundError(
                        f"{path}: no metrics for run {trained!r} on {dataset!r}; run the workflow first"
                    )
                # Video names as text, as the baseline stores them ("0001" must stay "0001").
                table = pd.read_csv(path, dtype={"video": str})
                for metric in frame_weighted(table):
                    sums = video_sums(table, metric)
                    if sums.empty:  # measured on no frame: kept, so that a change is seen
                        sums = pd.DataFrame({"sum": [math.nan], "count": [0]}, index=pd.Index([""], name="video"))
                    for video, row in sums.iterrows():
                        rows.append({
                            "dataset": dataset, "run": run, "method": method, "seed": seed,
                            "metric": metric, "video": video, "sum": row["sum"], "frames": int(row["count"]),
                        })
    return pd.DataFrame(rows, columns=BASELINE_COLUMNS)


def write_baseline(table: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        # repr precision: a bit-identical rerun must compare as identical.
        table.sort_values(["dataset", "run", "metric", "seed", "video"]).to_csv(
            tmp, index=False, float_format="%.17g"
        )
    return path


def read_baseline(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no baseline; write one from a trusted run with `animbench baseline update`"
        )
    text = {"dataset": str, "run": str, "method": str, "metric": str, "video": str}
    table = pd.read_csv(path, dtype=text, keep_default_na=False, na_values={"sum": [""]})
    missing = [c for c in BASELINE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: not a per-video baseline (missing columns {', '.join(missing)}); "
            "rewrite it with `animbench baseline update`"
        )
    table["video"] = table["video"].fillna("")
    return table


def effect(min_effect: dict[str, Any], metric: str) -> dict[str, Any]:
    """The metric's minimal effect settings (``default`` < the metric's own entry)."""
    return {**DEFAULT_EFFECT, **min_effect.get("default", {}), **min_effect.get(metric, {})}


def _pooled(part: pd.DataFrame) -> pd.DataFrame:
    """Per video, every seed's frames together: sum of sums and of counts."""
    measured = part[part["frames"] > 0]
    grouped = measured.groupby("video", sort=True)
    return pd.DataFrame({"sum": grouped["sum"].sum(), "count": grouped["frames"].sum()})


def _mean(part: pd.DataFrame) -> float:
    frames = part["frames"].sum()
    return float(part["sum"].sum() / frames) if frames else math.nan


def _seed_spread(part: pd.DataFrame) -> float:
    means = [_mean(rows) for _, rows in part.groupby("seed")]
    return float(pd.Series(means, dtype=float).std(ddof=1)) if len(means) > 1 else math.nan


def seed_noise(spread: float, seeds: int, baseline_seeds: int) -> float:
    """How far the mean over ``seeds`` trainings may lie from the mean over ``baseline_seeds``
    from the random stream alone: the one-sided 95 % bound of the difference of two means of
    independent trainings whose means spread with standard deviation ``spread``."""
    return SEED_NOISE_Z * spread * math.sqrt(1 / seeds + 1 / baseline_seeds)


def _identical(current: pd.DataFrame, baseline: pd.DataFrame) -> bool:
    order = ["seed", "video"]
    a = current.sort_values(order)[["seed", "video", "sum", "frames"]].reset_index(drop=True)
    b = baseline.sort_values(order)[["seed", "video", "sum", "frames"]].reset_index(drop=True)
    return a.shape == b.shape and bool(
        (a[["seed", "video", "frames"]].astype(str) == b[["seed", "video", "frames"]].astype(str)).all().all()
        and ((a["sum"] == b["sum"]) | (a["sum"].isna() & b["sum"].isna())).all()
    )


def compare_one(current: pd.DataFrame, baseline: pd.DataFrame, settings_: dict[str, Any]) -> dict[str, Any]:
    """The verdict on one (dataset, run, metric): its rows of the current and baseline tables."""
    base_mean, mean = _mean(baseline), _mean(current)
    spread = _seed_spread(baseline)
    threshold = settings_["abs"] + settings_["rel"] * abs(base_mean) if not math.isnan(base_mean) else math.nan
    if not math.isnan(spread):
        threshold = max(threshold, seed_noise(spread, current["seed"].nunique(), baseline["seed"].nunique()))
    out = {"baseline": base_mean, "current": mean, "delta": mean - base_mean, "low": math.nan,
           "high": math.nan, "videos": 0, "wilcoxon_p": math.nan, "seed_spread": spread, "min_effect": threshold}
    now, before = sorted(set(current["seed"])), sorted(set(baseline["seed"]))
    # Other seeds than the baseline's are other models: compared all the same (what a change to
    # the random stream does is what the minimal effect and the seed spread are there to absorb).
    out["seeds"] = "" if now == before else f"{', '.join(map(str, now))} (baseline {', '.join(map(str, before))})"
    measured_now = set(current.loc[current["frames"] > 0, "video"])
    measured_before = set(baseline.loc[baseline["frames"] > 0, "video"])
    if _identical(current, baseline):
        return out | {"delta": 0.0, "videos": len(measured_now), "direction": "identical", "regressed": False}
    if math.isnan(mean) or math.isnan(base_mean):
        # Measured on no frame on one side (or both, after a change to the frames): a change.
        if math.isnan(mean) and math.isnan(base_mean):
            return out | {"direction": "n/a (measured on no frame)", "regressed": False}
        side = "here" if math.isnan(mean) else "in the baseline"
        return out | {"direction": f"measured on no frame {side}", "regressed": True}
    if measured_now != measured_before:
        # A test video measured on one side only: the means are over other videos, and losing
        # the hardest video could pass for an improvement.
        lost, gained = sorted(measured_before - measured_now), sorted(measured_now - measured_before)
        parts = ([f"{len(lost)} measured only in the baseline ({', '.join(lost[:3])}{', ...' if len(lost) > 3 else ''})"] if lost else []) + (
            [f"{len(gained)} only here ({', '.join(gained[:3])}{', ...' if len(gained) > 3 else ''})"] if gained else [])
        return out | {"direction": "test videos differ: " + "; ".join(parts), "regressed": True}
    found = compare_sums(_pooled(baseline), _pooled(current), threshold)
    verdict = found.verdict
    if settings_["better"] == "higher":
        verdict = {"better": "worse", "worse": "better"}.get(verdict, verdict)
    return out | {"delta": found.difference, "low": found.low, "high": found.high, "videos": found.videos,
                  "wilcoxon_p": found.wilcoxon_p, "direction": verdict, "regressed": verdict == "worse"}


def compare(current: pd.DataFrame, baseline: pd.DataFrame, min_effect: dict[str, Any]) -> pd.DataFrame:
    """One row per (dataset, run, metric) in either table: difference, interval, verdict."""
    rows = []
    now = {k: part for k, part in current.groupby(KEYS, sort=True)}
    before = {k: part for k, part in baseline.groupby(KEYS, sort=True)}
    for key in sorted(set(now) | set(before)):
        dataset, run, metric = key
        part = now.get(key, before.get(key))
        out = {"dataset": dataset, "run": run, "method": part["method"].iloc[0], "metric": metric}
        if key not in before or key not in now:
            # A metric or run that appeared or vanished is a change the baseline must record.
            status = "new (not in baseline)" if key not in before else "missing (in baseline only)"
            mean = _mean(part)
            out |= {"baseline": mean if key in before else math.nan, "current": mean if key in now else math.nan,
                    "delta": math.nan, "low": math.nan, "high": math.nan, "videos": 0, "wilcoxon_p": math.nan,
                    "seed_spread": math.nan, "seeds": "", "min_effect": math.nan, "direction": status,
                    "regressed": True}
        else:
            out |= compare_one(now[key], before[key], effect(min_effect, metric))
        rows.append(out)
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def summary_line(comparison: pd.DataFrame) -> str:
    bad = comparison[comparison["regressed"]]
    if bad.empty:
        counts = comparison["direction"].value_counts()
        parts = ", ".join(f"{counts[d]} {d}" for d in ("identical", "within noise", "better") if d in counts)
        return f"regression check passed: {len(comparison)} metrics ({parts or 'none'})"
    items = "; ".join(
        f"{r.run}/{r.dataset} {r.metric} {r.direction}"
        + ("" if math.isnan(r.low) else f" ({r.delta:+.4g}, interval {r.low:+.4g} to {r.high:+.4g}, min effect {r.min_effect:.4g})")
        for r in bad.itertuples()
    )
    return f"regression check failed: {len(bad)} of {len(comparison)} metrics: {items}"


def check(config: dict[str, Any], root: Path, repo: Path) -> pd.DataFrame:
    """The check of the config's datasets x runs (results under ``root``) against its baseline.

    Baseline rows of other datasets or runs are not this config's business (a config that checks
    only some of a baseline's runs); a checked run the baseline lacks regresses as new."""
    chosen = settings(config)
    baseline = read_baseline(baseline_path(config, repo))
    baseline = baseline[baseline["dataset"].isin(chosen["datasets"]) & baseline["run"].isin(chosen["runs"])]
    return compare(collect(config, root), baseline, chosen["min_effect"])


def render_regression(
    config: dict[str, Any], out: Path, repo: Path, root: Path, config_name: str = ""
) -> tuple[Path, pd.DataFrame]:
    """Write the regression page; return it and the comparison (``regressed`` column)."""
    chosen = settings(config)
    path = baseline_path(config, repo)
    comparison = check(config, root, repo)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
    )
    missing = lambda v: v is None or (isinstance(v, float) and math.isnan(v))  # noqa: E731
    html = env.get_template("regression.html.j2").render(
        rows=comparison.to_dict("records"),
        summary=summary_line(comparison),
        failed=bool(comparison["regressed"].any()),
        baseline=str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path),
        effects={m: effect(chosen["min_effect"], m) for m in sorted(set(comparison["metric"]))},
        confidence=CONFIDENCE,
        config_name=config_name,
        commit=provenance.git_commit(repo),
        generated=provenance.now(),
        fmt=lambda v: "" if missing(v) else f"{v:.6g}",
        signed=lambda v: "" if missing(v) else f"{v:+.3g}",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(html)
    return out, comparison
