"""Two kinds of run in the workflow config: trained here, or reconstructed with a checkpoint.

A run with ``checkpoint:`` is not trained: it names a released checkpoint
(:mod:`methods.engine.releases`, e.g. ``tpsmm_taichi``) or a file path, either for every dataset
(``checkpoint: tpsmm_taichi``) or per dataset (``checkpoint: {taichi: tpsmm_taichi, vox:
tpsmm_vox}``); with a mapping the run exists only on the datasets it names. Reconstruction,
evaluation, the reports and the regression check treat it like any run.
"""

from __future__ import annotations

from typing import Any


def checkpoint_of(config: dict[str, Any], run: str, dataset: str) -> str | None:
    """The release name or path run ``run`` reconstructs ``dataset`` with; None for a trained run."""
    found = (config["runs"].get(run) or {}).get("checkpoint")
    if isinstance(found, dict):
        return found.get(dataset)
    return found


def is_released(config: dict[str, Any], run: str) -> bool:
    return "checkpoint" in (config["runs"].get(run) or {})


def applies(config: dict[str, Any], run: str, dataset: str) -> bool:
    """Whether ``run`` has a result on ``dataset`` (a per-dataset checkpoint map may skip some)."""
    return not is_released(config, run) or checkpoint_of(config, run, dataset) is not None


def trained(config: dict[str, Any], runs: list[str]) -> list[str]:
    """The runs of ``runs`` that are trained here (the others have no training log or curve)."""
    return [run for run in runs if not is_released(config, run)]
