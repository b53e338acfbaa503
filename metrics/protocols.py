"""Evaluation protocols: which metrics a dataset is measured with and by which evaluators.

The protocols are data, in ``metrics/protocols.yaml`` (validated against
``protocols.schema.yaml``); a dataset names one in the workflow config. This module loads them
into :class:`Protocol` objects and builds their backends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

HERE = Path(__file__).parent
PROTOCOLS_FILE = HERE / "protocols.yaml"
SCHEMA_FILE = HERE / "protocols.schema.yaml"
#: Column order of metrics.csv and of the report.
METRICS = ("l1", "akd", "mkr", "aed")


@dataclass(frozen=True)
class Protocol:
    name: str
    metrics: tuple[str, ...]
    description: str = ""
    #: {"backend": name, "mode": "body"|"face", "params": {...}} or None
    keypoints: dict[str, Any] | None = None
    #: {"backend": name, "params": {...}} or None
    identity: dict[str, Any] | None = None
    #: settings of metrics/train_evaluators.py when the evaluators are trained in the DAG
    trained_evaluators: dict[str, Any] | None = field(default=None)

    @property
    def needs_keypoints(self) -> bool:
        return "akd" in self.metrics or "mkr" in self.metrics

    @property
    def needs_identity(self) -> bool:
        return "aed" in self.metrics


def _check(name: str, entry: dict[str, Any], where: Path) -> Protocol:
    protocol = Protocol(name=name, **{k: (tuple(v) if k == "metrics" else v) for k, v in entry.items()})
    if "l1" not in protocol.metrics:
        raise ValueError(f"{where}: protocol {name!r} must measure l1")
    if protocol.needs_keypoints and not protocol.keypoints:
        raise ValueError(f"{where}: protocol {name!r} measures akd/mkr but names no keypoints backend")
    if protocol.needs_identity and not protocol.identity:
        raise ValueError(f"{where}: protocol {name!r} measures aed but names no identity backend")
    if "mkr" in protocol.metrics and protocol.keypoints and protocol.keypoints["mode"] == "face":
        raise ValueError(f"{where}: protocol {name!r}: MKR is not defined for face landmarks")
    return protocol


@cache
def load_schema() -> dict[str, Any]:
    """The protocols schema (also the definition of the evaluator training settings)."""
    return yaml.safe_load(SCHEMA_FILE.read_text())


def load_protocols(path: str | Path = PROTOCOLS_FILE) -> dict[str, Protocol]:
    """Read, validate and return every protocol of ``path``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read protocols file {path}: {err}") from err
    try:
        jsonschema.validate(data, load_schema())
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ValueError(f"{path}: invalid protocol at {where}: {err.message}") from err
    return {name: _check(name, entry, path) for name, entry in data.items()}


@cache
def _default_protocols() -> dict[str, Protocol]:
    return load_protocols()


def list_protocols() -> list[str]:
    """The protocols of metrics/protocols.yaml."""
    return sorted(_default_protocols())


def get_protocol(name: str, path: str | Path | None = None) -> Protocol:
    protocols = load_protocols(path) if path else _default_protocols()
    if name not in protocols:
        raise KeyError(f"unknown evaluation protocol {name!r}; known: {', '.join(sorted(protocols))}")
    return protocols[name]


def protocol_weights(protocol: Protocol) -> list[str]:
    """Weights-registry names (data_prep/weights.py) the protocol's pretrained backends load.

    Trained evaluators (the synthetic protocol) load none: they are trained in the DAG.
    """
    from metrics.backends import backend_weights

    if protocol.trained_evaluators is not None:
        return []
    names: list[str] = []
    for kind, spec in (("keypoint", protocol.keypoints), ("identity", protocol.identity)):
        if spec:
            names += backend_weights(kind, spec["backend"], spec.get("params", {}))
    return names


def build_backends(protocol: Protocol, device: str, weights_dir: Path, evaluators_dir: Path | None) -> tuple[Any, Any]:
    """(keypoint backend or None, identity backend or None) for ``protocol``.

    Trained evaluators load from ``evaluators_dir`` (``results/{dataset}/evaluators``); the
    pretrained ones from ``weights_dir`` (``resources/weights``).
    """
    from metrics.backends import build_identity_backend, build_keypoint_backend

    if protocol.trained_evaluators is not None:
        if evaluators_dir is None:
            raise ValueError(f"protocol {protocol.name!r} uses evaluators trained in the DAG: pass --evaluators-dir")
        weights_dir = evaluators_dir
    keypoint = identity = None
    if protocol.needs_keypoints:
        spec = protocol.keypoints
        keypoint = build_keypoint_backend(spec["backend"], device=device, weights_dir=weights_dir, **spec.get("params", {}))
    if protocol.needs_identity:
        spec = protocol.identity
        identity = build_identity_backend(spec["backend"], device=device, weights_dir=weights_dir, **spec.get("params", {}))
    return keypoint, identity
