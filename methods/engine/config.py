"""Loading and validating method configs.

``methods/configs/schema.yaml`` checks the sections every method shares; each method's own
``methods/configs/<method>/schema.yaml`` checks its ``model_params`` and ``train_params``, so a
method brings its schema along with its configs and no shared file lists every method.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from methods.registry import list_methods

SCHEMA_PATH = Path(__file__).parents[1] / "configs" / "schema.yaml"
CONFIG_DIR = Path(__file__).parents[1] / "configs"


class MethodConfigError(ValueError):
    """A method config does not match the schema; the message names the file and key path."""


def _read_schema(path: Path) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle)


def known_methods() -> list[str]:
    """The registered methods (methods.registry): each has ``methods/configs/<method>/schema.yaml``."""
    return list_methods()


def validate_method_config(config: Any, source: str = "<config>") -> None:
    """Raise :class:`MethodConfigError` listing every schema violation of ``config``."""
    errors = list(jsonschema.Draft202012Validator(_read_schema(SCHEMA_PATH)).iter_errors(config))
    if not errors:
        if config["method"] not in known_methods():
            raise MethodConfigError(
                f"{source}: unknown method {config['method']!r}; known: {', '.join(known_methods())}"
            )
        method_schema = CONFIG_DIR / str(config["method"]) / "schema.yaml"
        if not method_schema.is_file():
            raise MethodConfigError(
                f"{source}: method {config['method']!r} has no schema {method_schema}; add it beside its configs"
            )
        validator = jsonschema.Draft202012Validator(_read_schema(method_schema))
        errors = list(validator.iter_errors(config))
    errors.sort(key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if not errors:
        return
    lines = []
    for error in errors:
        path = ".".join(str(part) for part in error.absolute_path) or "<top level>"
        lines.append(f"  at {path}: {error.message}")
    raise MethodConfigError(f"{source}: invalid method config\n" + "\n".join(lines))


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Copy of ``config`` with dotted keys replaced, e.g. ``{"train_params.num_epochs": 2}``.

    New keys may be created; the schema validation that follows rejects misspelt ones.
    """
    result = copy.deepcopy(config)
    for dotted, value in overrides.items():
        node = result
        parts = dotted.split(".")
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise MethodConfigError(
                    f"override {dotted!r}: {'.'.join(parts[: i + 1])} is not a section"
                )
        node[parts[-1]] = copy.deepcopy(value)
    return result


def load_method_config(
    path: str | Path, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Read a YAML method config, apply dotted ``overrides`` and validate the result.

    Errors name ``path`` and the offending key path.
    """
    path = Path(path)
    if not path.is_file():
        raise MethodConfigError(f"method config {path} does not exist")
    try:
        with open(path) as handle:
            config = yaml.safe_load(handle)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise MethodConfigError(f"{path}: YAML syntax error{where}: {problem}; fix the file") from err
    if not isinstance(config, dict):
        raise MethodConfigError(f"{path}: expected a YAML mapping of sections, got {type(config).__name__}")
    if overrides:
        config = apply_overrides(config, overrides)
    source = f"{path} (with overrides {sorted(overrides)})" if overrides else str(path)
    validate_method_config(config, source)
    return config
