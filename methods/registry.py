"""Method registry: ``build_model(config)`` picks the builder named by ``config["method"]``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from methods.base import AnimationModel

Builder = Callable[..., AnimationModel]

_REGISTRY: dict[str, Builder] = {}

# Modules whose import registers a built-in method. They import this module, so they are loaded
# lazily (on first lookup) rather than at the top, which would be circular.
BUILTIN_MODULES: tuple[str, ...] = ("methods.fomm", "methods.tpsmm", "methods.mraa", "methods.cpab")
_builtins_loaded = False


def register_method(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering a model class or factory ``f(config, **kwargs)`` under ``name``."""

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY and _REGISTRY[name] is not builder:
            raise ValueError(f"method {name!r} is already registered by {_REGISTRY[name]!r}")
        _REGISTRY[name] = builder
        return builder

    return decorator


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def build_model(config: dict[str, Any], **kwargs: Any) -> AnimationModel:
    """Instantiate the method named by ``config["method"]``; extra kwargs go to its builder."""
    _load_builtins()
    if "method" not in config:
        raise KeyError(
            f"method config has no 'method' key; known methods: {', '.join(sorted(_REGISTRY))}"
        )
    name = config["method"]
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; known methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](config, **kwargs)
