"""Which pretrained weights files a training run needs, read from its method config alone.

The workflow asks this before planning a run (``reports/table2.html`` skips runs whose weights
this machine lacks instead of letting them fail hours in), and the reports ask it to say why a
row was not run. Names are keys of :data:`data_prep.weights.REGISTRY`.

Each need comes from one entry of :data:`NEEDS`: a config value, when it asks for weights, and
the registry name it asks for. Only presence is checked here (hashing a 375 MB SAM file for
every plan would be slow); the run itself verifies checksums through :func:`data_prep.weights.resolve`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep import weights


def _get(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _positive(value: Any) -> bool:
    # A loss weight is a number, or a list of per-scale numbers (the perceptual loss's).
    values = value if isinstance(value, list) else [value]
    return any(isinstance(v, int | float) and v > 0 for v in values)


def _sam(config: dict[str, Any]) -> str:
    # vit_b is the variant the CPAB configs name; the SAM loss reads the same key.
    variant = _get(config, "train_params.keypoint_semantic_params.variant") or "vit_b"
    return f"sam_{variant}"


@dataclass(frozen=True)
class Need:
    """``key`` of the method config asks for weights ``name(config)`` when ``wants(value)``."""

    key: str
    wants: Callable[[Any], bool]
    name: Callable[[dict[str, Any]], str]
    why: str


#: The one table of weights needs. ``perceptual_loss`` absent means vgg19 (methods.engine.train's default).
NEEDS: tuple[Need, ...] = (
    Need(
        "train_params.perceptual_loss",
        lambda v: (v if v is not None else "vgg19") == "vgg19",
        lambda c: "vgg19",
        "VGG-19 perceptual loss",
    ),
    Need(
        "train_params.loss_weights.keypoint_semantic",
        _positive,
        _sam,
        "SAM keypoint-semantic loss (L_KS)",
    ),
    Need(
        "train_params.loss_weights.structure",
        _positive,
        lambda c: "dino_vitb8",
        "DINO structure loss (L_struc)",
    ),
)


def required_weights(method_config: dict[str, Any]) -> list[str]:
    """Weights-registry names a training run of ``method_config`` loads, in :data:`NEEDS` order."""
    names: list[str] = []
    for need in NEEDS:
        if need.wants(_get(method_config, need.key)):
            name = need.name(method_config)
            if name not in names:
                names.append(name)
    return names


@dataclass(frozen=True)
class MissingFile:
    name: str  # registry name
    path: Path  # where the file was looked for

    def reason(self) -> str:
        """One line for a report: the file and the command that fetches it."""
        return f"{self.path.name} missing — `animbench weights fetch {self.name}`"


def missing_weights(method_config: dict[str, Any], weights_dir: str | Path) -> list[MissingFile]:
    """The required weights of ``method_config`` that are not files in ``weights_dir``.

    A name the registry does not know is an error (a config naming e.g. an unregistered SAM
    variant must not be reported as merely "missing").
    """
    missing = []
    for name in required_weights(method_config):
        if name not in weights.REGISTRY:
            raise KeyError(
                f"method config needs weights {name!r}, which data_prep/weights.py does not register; known: {', '.join(sorted(weights.REGISTRY))}"
            )
        path = Path(weights_dir) / weights.REGISTRY[name].filename
        if not path.is_file():
            missing.append(MissingFile(name, path))
    return missing


def run_method_config(run: dict[str, Any], dataset: str, repo: Path) -> tuple[Path, dict[str, Any]]:
    """The method config a workflow ``runs:`` entry trains on ``dataset``, overrides applied.

    Same resolution as the workflow's train rule: ``run['config']`` or
    ``methods/configs/{method}/{dataset}.yaml``. Not schema-validated here: training validates.
    """
    import yaml

    from methods.engine.config import apply_overrides

    path = Path(repo) / run.get("config", f"methods/configs/{run['method']}/{dataset}.yaml")
    if not path.is_file():
        raise FileNotFoundError(
            f"method config {path} does not exist (run of method {run['method']!r} on {dataset!r})"
        )
    config = yaml.safe_load(path.read_text())
    return path, apply_overrides(config, run.get("overrides", {}))


def run_missing_weights(
    workflow_config: dict[str, Any], run: str, dataset: str, repo: Path
) -> list[MissingFile]:
    """:func:`missing_weights` of workflow run ``run`` on ``dataset`` (weights in ``paths.weights``)."""
    _, method_config = run_method_config(workflow_config["runs"][run], dataset, repo)
    return missing_weights(method_config, workflow_config["paths"]["weights"])
