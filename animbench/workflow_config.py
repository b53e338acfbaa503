"""The one loader of the workflow config: YAML files merged over default.yaml, then validated.

Snakemake (the Snakefile) and the `animbench` commands that read a workflow config both go
through :func:`check_workflow_config`, so a wrong key, a wrong type or an unknown method,
dataset builder or protocol is the same one-line error everywhere: the file, the key and the fix.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA = Path("workflow/schemas/config.schema.yaml")
DEFAULT = Path("workflow/config/default.yaml")


class WorkflowConfigError(ValueError):
    """The workflow config is invalid; the message is one line naming the file, key and fix."""


def merge(base: dict, extra: dict) -> dict:
    """``extra`` merged over ``base`` (nested mappings merged key by key), as Snakemake does."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both else value
    return out


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _one_line(error: jsonschema.ValidationError) -> str:
    """The schema error as one sentence with its fix (never the schema itself)."""
    where = _where(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return (
            f"unknown key {', '.join(repr(k) for k in unknown)} under '{where}' "
            f"(allowed: {', '.join(allowed)}); fix its spelling or remove it"
        )
    if error.validator == "required":
        return f"'{where}' lacks a required key: {error.message}; add it"
    return f"'{where}': {error.message}; fix the value"


def _known(kind: str, name: str, known: list[str], key: str) -> None:
    if name not in known:
        raise WorkflowConfigError(
            f"{key}: unknown {kind} {name!r} (known: {', '.join(known)}); fix the name"
        )


def check_workflow_config(config: dict[str, Any], source: str, repo: Path) -> dict[str, Any]:
    """Validate ``config`` against the schema and the registries; return it unchanged.

    ``source`` names the file(s) in the message. Names are checked against the registries the
    jobs will use: methods (``runs.*.method``), dataset builders and evaluation protocols.
    """
    schema = yaml.safe_load((repo / SCHEMA).read_text())
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(config),
        key=lambda e: (len(e.absolute_path), _where(e)),
    )
    if errors:
        raise WorkflowConfigError(f"{source}: {_one_line(errors[0])}")
    from data_prep.datasets import list_datasets
    from methods.registry import list_methods
    from metrics.protocols import list_protocols

    methods, builders, protocols = list_methods(), list_datasets(), list_protocols()
    for name, run in config["runs"].items():
        _known("method", run["method"], methods, f"{source}: runs.{name}.method")
    for name, dataset in config["datasets"].items():
        _known("dataset builder", dataset["builder"], builders, f"{source}: datasets.{name}.builder")
        _known("protocol", dataset["protocol"], protocols, f"{source}: datasets.{name}.protocol")
        for extra in dataset.get("extra_protocols", []):
            _known("protocol", extra, protocols, f"{source}: datasets.{name}.extra_protocols")
            if extra == dataset["protocol"]:
                raise WorkflowConfigError(
                    f"{source}: datasets.{name}.extra_protocols repeats its protocol {extra!r}; remove it"
                )
    _check_checkpoint_runs(config, source)
    from reports.seeds import collisions

    clash = collisions(config)
    if clash:
        raise WorkflowConfigError(
            f"{source}: run {clash[0]!r} is also the name of a seed of another run (its results "
            "folder would be shared); rename it"
        )
    return config


def _looks_like_path(value: str) -> bool:
    return "/" in value or value.endswith((".pt", ".pth", ".tar"))


def _check_checkpoint_runs(config: dict[str, Any], source: str) -> None:
    """A run with ``checkpoint:`` names known releases of its own method (or file paths) on
    defined datasets, and has no seeds (nothing is trained)."""
    from methods.engine.releases import RELEASES, list_releases

    for name, run in config["runs"].items():
        if "checkpoint" not in run:
            continue
        key = f"{source}: runs.{name}.checkpoint"
        if "seeds" in run:
            raise WorkflowConfigError(
                f"{source}: runs.{name} has both checkpoint and seeds; a run with a checkpoint is not "
                "trained, so it has no seeds: remove one of them"
            )
        found = run["checkpoint"]
        per_dataset = found if isinstance(found, dict) else {None: found}
        for dataset, value in per_dataset.items():
            where = key if dataset is None else f"{key}.{dataset}"
            if dataset is not None and dataset not in config["datasets"]:
                raise WorkflowConfigError(
                    f"{where}: dataset {dataset!r} is not defined under 'datasets:' (defined: "
                    f"{', '.join(sorted(config['datasets']))}); fix the name"
                )
            if value in RELEASES:
                release = RELEASES[value]
                if release.method != run["method"]:
                    raise WorkflowConfigError(
                        f"{where}: {value!r} is a {release.method} checkpoint, but the run's method is "
                        f"{run['method']!r}; fix one of them"
                    )
                if dataset is not None and release.dataset != dataset:
                    raise WorkflowConfigError(
                        f"{where}: {value!r} was trained on {release.dataset!r}, not {dataset!r}; map it "
                        f"to {release.dataset!r} (or name the file by path to measure it elsewhere)"
                    )
            elif not _looks_like_path(value):
                raise WorkflowConfigError(
                    f"{where}: unknown released checkpoint {value!r} (known: {', '.join(list_releases())}); "
                    "fix the name, or give a file path"
                )


def load_workflow_config(paths: list[Path], repo: Path) -> dict[str, Any]:
    """workflow/config/default.yaml with each file merged over it, as Snakemake does; validated."""
    config = yaml.safe_load((repo / DEFAULT).read_text())
    for path in paths:
        try:
            extra = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as err:
            raise WorkflowConfigError(f"{path}: not valid YAML ({err.__class__.__name__}); fix the syntax") from err
        config = merge(config, extra)
    return check_workflow_config(config, ", ".join(str(p) for p in paths) or str(DEFAULT), repo)
