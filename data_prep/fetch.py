"""Fetch one file from a URL (or copy it from a local path), checked by SHA-256, atomically.

Used for the metadata tables and the MGif archive. ``file://`` URLs work like any other, which
is how the tests stand a local folder in for the network.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from data_prep.io import atomic_path, file_sha256


class FetchError(RuntimeError):
    """A file could not be fetched, or its checksum does not match."""


def fetch_file(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` unless a file with the right checksum is already there.

    ``sha256`` (hex) is checked before the file is renamed into place; a mismatch leaves
    ``dest`` untouched and raises :class:`FetchError` naming both checksums.
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or file_sha256(dest) == sha256):
        return dest
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = response.headers.get("Content-Length")
            with atomic_path(dest) as tmp, open(tmp, "wb") as out, tqdm(
                total=int(total) if total else None, unit="B", unit_scale=True,
                desc=dest.name, disable=not progress,
            ) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
                out.flush()
                if sha256 is not None and digest.hexdigest() != sha256:
                    raise FetchError(
                        f"{url}: SHA-256 is {digest.hexdigest()}, expected {sha256}; "
                        f"{dest} was not written"
                    )
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FetchError(f"cannot fetch {url} to {dest}: {exc}") from exc
    return dest


def copy_checked(src: str | os.PathLike, dest: str | os.PathLike, sha256: str | None = None) -> Path:
    """Copy a local file to ``dest`` atomically, checking ``sha256`` when given."""
    src, dest = Path(src), Path(dest)
    if not src.is_file():
        raise FetchError(f"{src} does not exist")
    if sha256 is not None and file_sha256(src) != sha256:
        raise FetchError(f"{src}: SHA-256 is {file_sha256(src)}, expected {sha256}")
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return dest
