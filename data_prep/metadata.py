"""Chunk metadata in the public video-preprocessing format, validated row by row.

A metadata CSV lists one chunk (a clip of one YouTube video) per row with the columns
``video_id,start,end,bbox,fps,width,height,partition`` and, for VoxCeleb, ``person_id``:

- ``start``/``end``: frame indices at the metadata ``fps`` (``end`` exclusive);
- ``bbox``: ``left-top-right-bottom`` in pixels of the metadata ``width`` x ``height`` frame;
- ``partition``: ``train`` or ``test``.

The protocol name of a chunk is ``[person_id#]video_id#start#end`` with 6-digit frame numbers.

Reading never stops at a bad row: :func:`read_metadata` returns the valid chunks and a list of
:class:`BadRow` (line number and reason) that the availability report counts as lost. Only a
file that cannot be read at all, or lacks a required column, raises :class:`MetadataError`.
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

REQUIRED_COLUMNS = ("video_id", "start", "end", "bbox", "fps", "width", "height", "partition")
PARTITIONS = ("train", "test")

#: The commit of video-preprocessing whose published TaiChi and Vox tables we fetch.
METADATA_COMMIT = "ac40aac58657a3d8db85421cd4afcf465e86ead1"


class MetadataError(ValueError):
    """A metadata file is unreadable, lacks a column, or is a known-bad table."""


@dataclass(frozen=True)
class Chunk:
    """One row of the metadata: a clip of ``video_id`` to crop, resize and store."""

    video_id: str
    start: int
    end: int
    left: int
    top: int
    right: int
    bottom: int
    fps: float
    width: int
    height: int
    partition: str
    person_id: str = ""

    @property
    def youtube_id(self) -> str:
        """The id to download: TED ids carry ``#start#end`` after the YouTube id."""
        return self.video_id.split("#", 1)[0]

    @property
    def name(self) -> str:
        """Protocol name ``[person_id#]video_id#start#end`` (6-digit zero-padded frames).

        A ``video_id`` that itself holds ``#``-separated parts (TED) has them in reverse order,
        as the reference preparation script names them, so existing preprocessed copies match.
        """
        prefix = f"{self.person_id}#" if self.person_id else ""
        video = "#".join(reversed(self.video_id.split("#")))
        return f"{prefix}{video}#{self.start:06d}#{self.end:06d}"

    @property
    def key(self) -> tuple[str, str]:
        """Identity on disk: partition and name."""
        return (self.partition, self.name)

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.right, self.bottom)

    def to_row(self) -> dict[str, str]:
        """The chunk back in the published CSV format."""
        row = {
            "video_id": self.video_id,
            "start": str(self.start),
            "end": str(self.end),
            "bbox": f"{self.left}-{self.top}-{self.right}-{self.bottom}",
            "fps": repr(self.fps),
            "width": str(self.width),
            "height": str(self.height),
            "partition": self.partition,
        }
        if self.person_id:
            row["person_id"] = self.person_id
        return row


@dataclass(frozen=True)
class BadRow:
    """A metadata row that was rejected (``severity`` error) or kept with a remark (warning).

    ``line`` is the 1-based line number in the file.
    """

    line: int
    video_id: str
    reason: str
    severity: str = "error"


CHUNK_FIELDS = [f.name for f in fields(Chunk)]


def _int(text: str, what: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if value != int(value):
        raise ValueError(f"{what} {text!r} is not an integer")
    return int(value)


def parse_row(row: dict[str, str], require_person_id: bool = False) -> Chunk:
    """Validate one CSV row and return its :class:`Chunk`; raise ValueError with the reason."""
    video_id = (row.get("video_id") or "").strip()
    if not video_id:
        raise ValueError("empty video_id")
    if "/" in video_id or video_id.startswith("."):
        raise ValueError(f"video_id {video_id!r} cannot be a file name")
    start = _int(row["start"], "start")
    end = _int(row["end"], "end")
    if start < 0:
        raise ValueError(f"start {start} is negative")
    if start >= end:
        raise ValueError(f"start {start} is not before end {end}")
    try:
        fps = float(row["fps"])
    except ValueError:
        raise ValueError(f"fps {row['fps']!r} is not a number") from None
    if not fps > 0:
        raise ValueError(f"fps {fps} is not positive")
    width = _int(row["width"], "width")
    height = _int(row["height"], "height")
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size {width}x{height} is not positive")
    parts = (row["bbox"] or "").strip().split("-")
    if len(parts) != 4:
        raise ValueError(f"bbox {row['bbox']!r} is not left-top-right-bottom")
    left, top, right, bottom = (_int(p, "bbox value") for p in parts)
    # A bbox reaching past the right or bottom edge is kept (see bbox_warning); one that does
    # not overlap the frame, or is empty, cannot give a crop.
    if not (0 <= left < right and 0 <= top < bottom and left < width and top < height):
        raise ValueError(
            f"bbox {left}-{top}-{right}-{bottom} is not inside the {width}x{height} frame"
        )
    partition = (row["partition"] or "").strip()
    if partition not in PARTITIONS:
        raise ValueError(f"partition {partition!r} is not one of {list(PARTITIONS)}")
    person_id = (row.get("person_id") or "").strip()
    if require_person_id and not person_id:
        raise ValueError("person_id is empty")
    if "/" in person_id:
        raise ValueError(f"person_id {person_id!r} cannot be part of a file name")
    return Chunk(video_id, start, end, left, top, right, bottom, fps, width, height, partition,
                 person_id)


def bbox_warning(chunk: Chunk) -> str:
    """Why a kept chunk's bbox is unusual, or ``""``.

    The published VoxCeleb table has 866 rows whose box reaches past the frame's bottom or right;
    the reference preparation slices the frame with them, which clips the box to the frame, so
    they are kept and clipped the same way, and reported.
    """
    if chunk.right > chunk.width or chunk.bottom > chunk.height:
        return (f"bbox {chunk.left}-{chunk.top}-{chunk.right}-{chunk.bottom} reaches past the "
                f"{chunk.width}x{chunk.height} frame; clipped to it, as the reference does")
    return ""


def read_metadata(
    path: str | os.PathLike, require_person_id: bool = False
) -> tuple[list[Chunk], list[BadRow]]:
    """Read a metadata CSV: the valid chunks (in file order) and the remarks on rows.

    A row is rejected (severity ``error``) for an unparsable or out-of-range value, a bbox that
    does not overlap the frame, an unknown partition, or a chunk name an earlier row of the same
    partition already uses with other values. Kept with a ``warning``: an exact repeat of an
    earlier row (the reference writes such a chunk once), a bbox reaching past the frame
    (clipped), and a row whose partition, person, fps or frame size differ from the first row of
    its ``video_id``: the reference preparation (video-preprocessing's ``load_videos.py``) takes
    those from a video's first row for every chunk of it (:func:`as_first_row`), so VoxCeleb's 3
    chunks listed in train and in test exist in train only (test: 522 chunks, not 525).
    """
    path = Path(path)
    if not path.is_file():
        raise MetadataError(f"metadata file {path} does not exist")
    chunks: list[Chunk] = []
    bad: list[BadRow] = []
    seen: dict[tuple[str, str], tuple[int, Chunk]] = {}
    first_rows: dict[str, tuple[int, Chunk]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if require_person_id and "person_id" not in columns:
                missing.append("person_id")
            if missing:
                raise MetadataError(
                    f"metadata file {path} lacks column(s) {missing}; expected "
                    f"{','.join(REQUIRED_COLUMNS)}[,person_id] (video-preprocessing format)"
                )
            for row in reader:
                line = reader.line_num
                if None in row or any(row.get(c) is None for c in REQUIRED_COLUMNS):
                    bad.append(BadRow(line, row.get("video_id") or "", "wrong number of fields"))
                    continue
                try:
                    chunk = parse_row(row, require_person_id)
                except (ValueError, KeyError) as exc:
                    bad.append(BadRow(line, row.get("video_id") or "", str(exc)))
                    continue
                moved = ""
                if chunk.video_id in first_rows:
                    first_line, first = first_rows[chunk.video_id]
                    moved_to = as_first_row(chunk, first)
                    if moved_to != chunk:
                        moved = (f"{chunk.name} ({chunk.partition}) is written as its video's first "
                                 f"row, line {first_line}, says ({moved_to.partition}"
                                 f"{', ' + moved_to.name if moved_to.name != chunk.name else ''}), "
                                 "as the reference does")
                        chunk = moved_to
                else:
                    first_rows[chunk.video_id] = (line, chunk)
                key = (chunk.partition, chunk.name)
                if key in seen:
                    first_line, first = seen[key]
                    if first == chunk:
                        bad.append(BadRow(line, chunk.video_id, (f"{moved}; then " if moved else "")
                                          + f"repeats line {first_line} ({chunk.name}); kept once",
                                          "warning"))
                    else:
                        bad.append(BadRow(line, chunk.video_id, f"duplicate chunk {chunk.name} "
                                          f"with other values than line {first_line}"))
                    continue
                if moved:
                    bad.append(BadRow(line, chunk.video_id, moved, "warning"))
                warning = bbox_warning(chunk)
                if warning:
                    bad.append(BadRow(line, chunk.video_id, warning, "warning"))
                seen[key] = (line, chunk)
                chunks.append(chunk)
    except UnicodeDecodeError as exc:
        raise MetadataError(f"metadata file {path} is not UTF-8 text: {exc}") from exc
    except csv.Error as exc:
        raise MetadataError(f"metadata file {path} cannot be parsed as CSV: {exc}") from exc
    return chunks, bad


def as_first_row(chunk: Chunk, first: Chunk) -> Chunk:
    """``chunk`` as the reference preparation writes it: with the partition, person id, fps and
    frame size of ``first``, the first row of its ``video_id`` (the script reads those once per
    video; a chunk whose folder then exists already is skipped)."""
    return replace(chunk, partition=first.partition, person_id=first.person_id, fps=first.fps,
                   width=first.width, height=first.height)


def group_by_video(chunks: list[Chunk]) -> dict[str, list[Chunk]]:
    """Chunks keyed by the YouTube id they are cut from (one download serves them all)."""
    groups: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        groups.setdefault(chunk.youtube_id, []).append(chunk)
    return groups


def write_chunks(path: str | os.PathLike, chunks: list[Chunk]) -> None:
    """Write validated chunks (one field per column, as :class:`Chunk`) atomically."""
    from data_prep.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CHUNK_FIELDS)
        writer.writeheader()
        for chunk in chunks:
            writer.writerow(asdict(chunk))


def read_chunks(path: str | os.PathLike) -> list[Chunk]:
    """Read chunks written by :func:`write_chunks` (already validated)."""
    path = Path(path)
    if not path.is_file():
        raise MetadataError(f"chunk table {path} does not exist")
    types = {f.name: f.type for f in fields(Chunk)}
    out = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            values = {}
            for key, text in row.items():
                kind = types[key]
                values[key] = int(text) if kind == "int" else float(text) if kind == "float" else text
            out.append(Chunk(**values))
    return out


def write_bad_rows(path: str | os.PathLike, bad: list[BadRow]) -> None:
    """Write the remarks (``line,video_id,reason,severity``) atomically, header even when empty."""
    from data_prep.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["line", "video_id", "reason", "severity"])
        writer.writeheader()
        for row in bad:
            writer.writerow(asdict(row))
