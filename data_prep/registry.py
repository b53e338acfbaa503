"""Dataset registry: dataset name -> builder that materialises it on disk.

A builder has the signature ``builder(params: dict, out_dir: Path) -> Path`` and must write the
standard layout (``<out_dir>/{train,test}/<video>/0000000.png ...`` plus ``manifest.csv``)
atomically. Real datasets register themselves here the same way as ``synthetic``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from data_prep import synthetic

Builder = Callable[[dict, Path], Path]

DATASETS: dict[str, Builder] = {}


def register_dataset(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name`` (duplicate names are an error)."""

    def decorate(builder: Builder) -> Builder:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        DATASETS[name] = builder
        return builder

    return decorate


def prepare_dataset(name: str, params: dict | None, out_dir: str | os.PathLike) -> Path:
    """Build dataset ``name`` with ``params`` into ``out_dir`` and return its path."""
    try:
        builder = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}") from None
    return builder(dict(params or {}), Path(out_dir))


@register_dataset("synthetic")
def _build_synthetic(params: dict, out_dir: Path) -> Path:
    return synthetic.generate(synthetic.SyntheticConfig.from_dict(params), out_dir)


# Real datasets register themselves on import (after register_dataset exists: they import it).
from data_prep import mgif, taichi, ted, vox  # noqa: E402, F401
