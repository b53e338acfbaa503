"""Method registry: ``build_model(config)`` picks the builder named by ``config["method"]``.

Every module of ``methods/models/`` is a built-in method module, imported on the first lookup:
a new method is one new file there (``@register_method("name")``) plus its configs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_prep.registry import Registry
from methods.base import AnimationModel

Builder = Callable[..., AnimationModel]

METHODS: Registry[Builder] = Registry("method", builtin_packages=("methods.models",))


def register_method(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering a model class or factory ``f(config, **kwargs)`` under ``name``."""
    return METHODS.register(name)


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    return METHODS.names()


def method_source(name: str) -> Path:
    """The source file of the module that registers ``name`` (the workflow re-runs a method's
    jobs when it changes)."""
    return Path(sys.modules[METHODS.get(name).__module__].__file__)


def build_model(config: dict[str, Any], **kwargs: Any) -> AnimationModel:
    """Instantiate the method named by ``config["method"]``; extra kwargs go to its builder."""
    if "method" not in config:
        raise KeyError(f"method config has no 'method' key; known methods: {', '.join(list_methods())}")
    return METHODS.get(config["method"])(config, **kwargs)
