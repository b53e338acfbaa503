"""Dataset registry: dataset name -> builder that materialises it on disk.

A builder has the signature ``builder(params: dict, out_dir: Path) -> Path`` and must write the
standard layout (``<out_dir>/{train,test}/<video>/0000000.png ...`` plus ``manifest.csv``)
atomically. Each dataset module registers its builder with ``@register_dataset("name")``; the
YouTube datasets do it through :func:`data_prep.video_dataset.register_video_dataset`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from data_prep.registry import Registry

Builder = Callable[[dict, Path], Path]

#: The built-in datasets' modules, imported on the first lookup.
BUILTIN_MODULES: tuple[str, ...] = (
    "data_prep.synthetic",
    "data_prep.mgif",
    "data_prep.taichi",
    "data_prep.ted",
    "data_prep.vox",
)
DATASETS: Registry[Builder] = Registry("dataset", BUILTIN_MODULES)


def register_dataset(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name`` (duplicate names are an error)."""
    return DATASETS.register(name)


def list_datasets() -> list[str]:
    return DATASETS.names()


def prepare_dataset(name: str, params: dict | None, out_dir: str | os.PathLike) -> Path:
    """Build dataset ``name`` with ``params`` into ``out_dir`` and return its path."""
    try:
        builder = DATASETS.get(name)
    except KeyError as err:
        raise ValueError(err.args[0]) from None
    return builder(dict(params or {}), Path(out_dir))
