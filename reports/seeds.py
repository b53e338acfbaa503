"""Seeds as a run dimension: a run of the workflow config and the trainings it stands for.

A run may list ``seeds: [0, 1, 2]``; the DAG then trains, reconstructs and measures one run per
seed, named ``{run}-seed{n}`` (``results/{dataset}/{run}-seed{n}/``), and the reports show the
run as one row (the mean over its seeds, their spread, and the interval over test videos of the
seeds pooled) with the per-seed rows beside it. A run without ``seeds`` trains once, with the
config's top-level ``seed``, in ``results/{dataset}/{run}/``.
"""

from __future__ import annotations

import re
from typing import Any

SEED_SUFFIX = "-seed"
_MEMBER = re.compile(rf"^(?P<run>.+){SEED_SUFFIX}(?P<seed>\d+)$")


def members(config: dict[str, Any], run: str) -> list[str]:
    """The trained runs ``run`` stands for: itself, or one ``{run}-seed{n}`` per listed seed."""
    seeds = (config["runs"].get(run) or {}).get("seeds")
    return [f"{run}{SEED_SUFFIX}{seed}" for seed in seeds] if seeds else [run]


def member_seeds(config: dict[str, Any], run: str) -> dict[str, int]:
    """Trained run -> its training seed, for every member of ``run``."""
    seeds = (config["runs"].get(run) or {}).get("seeds")
    if seeds:
        return dict(zip(members(config, run), map(int, seeds), strict=True))
    return {run: int(config["seed"])}


def resolve(config: dict[str, Any], name: str) -> tuple[str, int] | None:
    """The config run and seed a trained run's name stands for; None for an unknown name.

    ``fomm`` -> ("fomm", config seed) when fomm lists no seeds; ``fomm-seed2`` -> ("fomm", 2)
    when fomm lists seed 2. A run that lists seeds is not itself trained."""
    runs = config["runs"]
    if name in runs and not runs[name].get("seeds"):
        return name, int(config["seed"])
    found = _MEMBER.match(name)
    # `fomm-seed01` is not `fomm-seed1`: only the exact member names are trained runs.
    if found and found["run"] in runs and name in members(config, found["run"]):
        return found["run"], int(found["seed"])
    return None


def expand(config: dict[str, Any], runs: list[str]) -> list[str]:
    """Every trained run of ``runs``, in order."""
    return [member for run in runs for member in members(config, run)]


def collisions(config: dict[str, Any]) -> list[str]:
    """Per-seed names that are also runs of the config (which would share a results folder)."""
    return sorted(
        member for run, entry in config["runs"].items() if entry.get("seeds")
        for member in members(config, run) if member in config["runs"]
    )
