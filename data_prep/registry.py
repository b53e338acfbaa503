"""The one registration pattern of the project: a name -> an entry, filled by a decorator.

Methods, datasets, evaluator backends and weights files each have a :class:`Registry`. The
modules that define the built-in entries import the registry to decorate them, so the registry
cannot import them at its top (that would be a circle): it imports its ``builtin_modules``
lazily, the first time someone asks for a name (the way timm registers its models). The
workflow asks a registry (``names()``) instead of repeating the names.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_MISSING = object()


class Registry(Generic[T]):
    """``kind`` names what is registered ("method", "dataset", ...) in every error message.

    ``builtin_modules`` lists the modules whose import registers the built-in entries;
    ``builtin_packages`` names packages every module of which is such a module, so adding one
    there is adding a file, not editing a list.
    """

    def __init__(
        self, kind: str, builtin_modules: Iterable[str] = (), builtin_packages: Iterable[str] = ()
    ) -> None:
        self.kind = kind
        self._builtin_modules = tuple(builtin_modules)
        self._builtin_packages = tuple(builtin_packages)
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``entry`` under ``name``; another entry of that name is an error."""

        def decorator(entry: T) -> T:
            self.add(name, entry)
            return entry

        return decorator

    def add(self, name: str, entry: T) -> T:
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is already registered by {self._entries[name]!r}")
        self._entries[name] = entry
        return entry

    def _modules(self) -> list[str]:
        modules = list(self._builtin_modules)
        for package in self._builtin_packages:
            path = importlib.import_module(package).__path__
            modules += [f"{package}.{info.name}" for info in pkgutil.iter_modules(path)]
        return modules

    def load_builtins(self) -> None:
        # Marked loaded first: a built-in module that looks a name up while it registers must
        # not start the imports again. A failed import unmarks it, so that every later lookup
        # fails as loudly as the first instead of answering from a partial registry.
        if not self._loaded:
            self._loaded = True
            try:
                for module in self._modules():
                    importlib.import_module(module)
            except BaseException:
                self._loaded = False
                raise

    def names(self) -> list[str]:
        """Every registered name, sorted (built-ins included)."""
        self.load_builtins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self.load_builtins()
        return name in self._entries

    def get(self, name: str, default: Any = _MISSING) -> T:
        """The entry of ``name``; an unknown name is a KeyError that lists the known ones
        (or ``default`` when one is given)."""
        self.load_builtins()
        if name not in self._entries:
            if default is not _MISSING:
                return default
            known = ", ".join(sorted(self._entries)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._entries[name]

    # Mapping access, so a registry reads like the dict it replaces (and tests can monkeypatch
    # an entry in and out with ``monkeypatch.setitem``).
    __getitem__ = get

    def __setitem__(self, name: str, entry: T) -> None:
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def items(self) -> list[tuple[str, T]]:
        self.load_builtins()
        return sorted(self._entries.items())

    def values(self) -> list[T]:
        return [entry for _, entry in self.items()]
