"""Dataset manifests.

Every dataset folder holds ``manifest.csv`` with one row per video and the columns
``video,split,frames,size,source,status``:

- ``split``: ``train`` or ``test``; the video lives in ``<root>/<split>/<video>/``.
- ``frames``: number of frames (0 when the video is not available).
- ``size``: frame resolution as ``HxW`` (height first, like every ``frame_size`` in animbench),
  e.g. ``64x64``; see :func:`format_size` / :func:`parse_size`.
- ``source``: where the video came from (``synthetic``, a URL, ...).
- ``status``: ``ok``, ``missing`` (could not be downloaded) or ``corrupt``. Unavailable videos
  are recorded, never silently dropped, so a report can say what the numbers were computed on.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from data_prep.io import atomic_path

MANIFEST_NAME = "manifest.csv"
COLUMNS = ["video", "split", "frames", "size", "source", "status"]
SPLITS = ("train", "test")
STATUSES = ("ok", "missing", "corrupt")
_SIZE_RE = re.compile(r"^(\d+)x(\d+)$")


class ManifestError(ValueError):
    """A manifest is missing or malformed, or a dataset lacks the requested videos."""


def format_size(size: tuple[int, int]) -> str:
    """``(H, W)`` -> ``"HxW"``."""
    h, w = size
    return f"{int(h)}x{int(w)}"


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` -> ``(H, W)``."""
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ManifestError(f"size {text!r} is not of the form HxW, e.g. 64x64")
    return int(m.group(1)), int(m.group(2))


def _validate(df: pd.DataFrame, where: str) -> pd.DataFrame:
    if list(df.columns) != COLUMNS:
        raise ManifestError(f"{where}: columns are {list(df.columns)}; expected exactly {COLUMNS}")
    bad_split = sorted(set(df["split"]) - set(SPLITS))
    if bad_split:
        raise ManifestError(f"{where}: unknown split value(s) {bad_split}; allowed {list(SPLITS)}")
    bad_status = sorted(set(df["status"]) - set(STATUSES))
    if bad_status:
        raise ManifestError(
            f"{where}: unknown status value(s) {bad_status}; allowed {list(STATUSES)}"
        )
    if (df["video"] == "").any():
        raise ManifestError(f"{where}: empty video name")
    dup = df[df.duplicated(["split", "video"], keep=False)]
    if len(dup):
        raise ManifestError(f"{where}: duplicate video(s) {sorted(set(dup['video']))[:5]}")
    try:
        frames = pd.to_numeric(df["frames"], errors="raise").astype("int64")
    except (ValueError, TypeError) as exc:
        raise ManifestError(f"{where}: 'frames' must be integers: {exc}") from exc
    if (frames < 0).any():
        raise ManifestError(f"{where}: negative frame count")
    ok_empty = df[(df["status"] == "ok") & (frames == 0)]
    if len(ok_empty):
        raise ManifestError(f"{where}: video {ok_empty['video'].iloc[0]!r} is ok but has 0 frames")
    for s in df["size"]:
        if s != "":
            try:
                parse_size(s)
            except ManifestError as exc:
                raise ManifestError(f"{where}: {exc}") from None
    df = df.copy()
    df["frames"] = frames
    return df


def write_manifest(
    path: str | os.PathLike, rows: Iterable[Mapping[str, object]] | pd.DataFrame
) -> Path:
    """Validate ``rows`` (dicts with the manifest columns) and write them atomically to ``path``."""
    path = Path(path)
    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        raise ManifestError(f"{path}: refusing to write a manifest with no rows")
    missing = [c for c in COLUMNS if c not in df.columns]
    extra = [c for c in df.columns if c not in COLUMNS]
    if missing or extra:
        raise ManifestError(f"{path}: rows lack columns {missing} / have unknown columns {extra}")
    df = df[COLUMNS].astype({"video": str, "split": str, "size": str, "source": str, "status": str})
    df = _validate(df, str(path))
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a manifest; ``path`` may be the CSV or the dataset folder."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    try:
        _check_row_lengths(path)
        # Read everything as text: video names like "000123" must not become numbers.
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"manifest {path} cannot be parsed: {exc}") from exc
    return _validate(df, f"manifest {path}")


def _check_row_lengths(path: Path) -> None:
    """Reject a row with too few or too many fields, naming its line (pandas would silently pad
    a short row with empty values and then complain about an empty status instead)."""
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return  # empty file: pandas reports it
        for row in reader:
            if row and len(row) != len(header):
                video = f" (video {row[0]!r})" if row[0] else ""
                raise ManifestError(
                    f"manifest {path}: line {reader.line_num}{video} has {len(row)} field(s), "
                    f"expected {len(header)} ({','.join(header)}); fix or remove that row"
                )


def expected_frame_counts(root: str | os.PathLike, split: str) -> dict[str, int]:
    """Frame count the manifest records for every ``ok`` video of ``split``."""
    df = read_manifest(Path(root) / MANIFEST_NAME)
    ok = df[(df["split"] == split) & (df["status"] == "ok")]
    return dict(zip(ok["video"], (int(n) for n in ok["frames"]), strict=True))


def check_frame_count(root: str | os.PathLike, split: str, video: str, found: int, expected: int) -> None:
    """Raise :class:`ManifestError` when a video folder holds another number of frames than the
    manifest records (a frame deleted or added after preparation)."""
    if found != expected:
        raise ManifestError(
            f"video {Path(root) / split / video} holds {found} frame(s) but {Path(root) / MANIFEST_NAME} "
            f"records {expected}; re-run the dataset preparation (animbench prepare) or fix the manifest"
        )


def available_videos(root: str | os.PathLike, split: str) -> list[str]:
    """Sorted names of the ``ok`` videos of ``split`` in the dataset at ``root``.

    Raises :class:`ManifestError` when the split is absent or none of its videos is available.
    """
    root = Path(root)
    if split not in SPLITS:
        raise ManifestError(f"unknown split {split!r}; allowed {list(SPLITS)}")
    df = read_manifest(root / MANIFEST_NAME)
    rows = df[df["split"] == split]
    if rows.empty:
        raise ManifestError(f"dataset at {root} has no {split} split")
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        raise ManifestError(
            f"dataset at {root} has no available {split} videos "
            f"({len(rows)} listed, none with status ok)"
        )
    return sorted(ok["video"])
