"""Pretrained weights: where each file comes from, its checksum, and how to fetch it.

Nothing downloads at import or training time. A component that needs a file calls
:func:`resolve`, which either returns the verified local path or stops with an error that names
the file, its official URL and the command that fetches it.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path

from data_prep.io import atomic_path, file_sha256

DEFAULT_WEIGHTS_DIR = Path("resources/weights")


@dataclass(frozen=True)
class WeightsFile:
    name: str
    filename: str
    url: str
    sha256_prefix: str  # torchvision publishes the first hex digits of the sha256 in the file name
    description: str


REGISTRY: dict[str, WeightsFile] = {}


def register(entry: WeightsFile) -> WeightsFile:
    REGISTRY[entry.name] = entry
    return entry


register(
    WeightsFile(
        name="vgg19",
        filename="vgg19.pth",
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        sha256_prefix="dcbb9e9d",
        description="torchvision VGG-19 ImageNet weights (perceptual loss of every method)",
    )
)


class MissingWeightsError(FileNotFoundError):
    """A weights file is missing or does not match its checksum."""


def _entry(name: str) -> WeightsFile:
    if name not in REGISTRY:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def resolve(name: str, weights_dir: str | Path = DEFAULT_WEIGHTS_DIR, verify: bool = True) -> Path:
    """Path of the local copy of weights ``name``, checked against its checksum."""
    entry = _entry(name)
    path = Path(weights_dir) / entry.filename
    how = (
        f"Fetch it with `animbench weights fetch {name} --dir {weights_dir}` on a machine with "
        f"internet access, or download {entry.url} and place it at {path}."
    )
    if not path.is_file():
        raise MissingWeightsError(f"missing weights file {path} ({entry.description}). {how}")
    if verify and not file_sha256(path).startswith(entry.sha256_prefix):
        raise MissingWeightsError(
            f"weights file {path} does not match its checksum (sha256 should start with "
            f"{entry.sha256_prefix}); it is truncated or a different file. {how}"
        )
    return path


def fetch(name: str, weights_dir: str | Path = DEFAULT_WEIGHTS_DIR) -> Path:
    """Download weights ``name`` from the official URL, verify, and move into place atomically."""
    entry = _entry(name)
    path = Path(weights_dir) / entry.filename
    with atomic_path(path) as tmp:
        urllib.request.urlretrieve(entry.url, tmp)
        if not file_sha256(tmp).startswith(entry.sha256_prefix):
            raise MissingWeightsError(f"download of {entry.url} does not match its checksum")
    return path
