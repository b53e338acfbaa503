"""The YouTube datasets (TaiChiHD, VoxCeleb, TED-talks) in three stages that scale.

1. :func:`prepare_metadata` — fetch (or take the user's) metadata table, check it, validate
   every row; writes ``chunks.csv`` (valid chunks), ``metadata_errors.csv`` (rejected rows) and
   ``metadata_source.json`` (where the table came from and its SHA-256) and
   ``preparation.json`` (how frames are made: resize method and size; :func:`check_preparation`
   refuses to mix frames of two preparations in one folder).
2. :func:`prepare_video` — one job per YouTube id: find the chunks in a preprocessed copy, or
   the raw video in the user's folder, or download it; cut its chunks; write
   ``.status/{youtube_id}.csv``. Snakemake runs one such job per video (a checkpoint on
   ``chunks.csv`` lists them), so a cluster parallelises VoxCeleb's 3,442 videos.
3. :func:`assemble` — ``manifest.csv`` (status ok/missing/corrupt for every valid chunk),
   ``availability.csv`` (every chunk of the table, including rejected rows, with the reason)
   and ``availability_summary.csv`` (per split: the protocol's count, how many this run has).

:func:`build` runs the three stages in one process (``animbench prepare taichi``) with a pool of
workers over videos. Nothing holds a dataset in memory: frames stream from ffmpeg to PNG files.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from data_prep.availability import write_availability
from data_prep.datasets import register_dataset
from data_prep.download import DownloadOptions, download_video, remove_partial
from data_prep.fetch import FetchError, fetch_file
from data_prep.io import atomic_path, file_sha256, write_text
from data_prep.manifest import format_size, write_manifest
from data_prep.metadata import (
    BadRow,
    Chunk,
    MetadataError,
    group_by_video,
    read_chunks,
    read_metadata,
    write_bad_rows,
    write_chunks,
)
from data_prep.preprocess import ChunkResult, check_resize, chunk_dir, cut_chunks
from data_prep.registry import Registry
from data_prep.sources import VideoSources, find_preprocessed, find_raw_video, import_preprocessed

CHUNKS_NAME = "chunks.csv"
BAD_ROWS_NAME = "metadata_errors.csv"
SOURCE_NAME = "metadata_source.json"
PREPARATION_NAME = "preparation.json"
STATUS_DIR = ".status"
STATUS_COLUMNS = ["video", "split", "frames", "size", "source", "status", "reason"]
TRANSIENT_MARK = "retry later"  # in the reasons of failures worth retrying (see download.py)


@dataclass(frozen=True)
class VideoDatasetSpec:
    """What distinguishes one YouTube dataset from another."""

    name: str
    size: tuple[int, int]
    metadata_url: str | None
    metadata_sha256: str | None
    require_person_id: bool = False
    # Chunks per split in the protocol (the papers' counts), the denominator of availability.
    protocol_counts: dict[str, int] | None = None
    # Extra checks of a whole table (TED: refuse the known-wrong published one).
    check_table: Callable[[Path, list[Chunk], list[BadRow]], None] | None = None
    metadata_help: str = ""


#: The YouTube datasets (each also in the dataset registry); the workflow gives these the
#: per-video download rules.
VIDEO_DATASETS: Registry[VideoDatasetSpec] = Registry(
    "video dataset", ("data_prep.taichi", "data_prep.ted", "data_prep.vox")
)


def register_video_dataset(spec: VideoDatasetSpec) -> VideoDatasetSpec:
    """Add ``spec`` to :data:`VIDEO_DATASETS` and register its builder in the dataset registry."""
    VIDEO_DATASETS.add(spec.name, spec)
    register_dataset(spec.name)(lambda params, out_dir: build(spec, params, out_dir))
    return spec


def list_video_datasets() -> list[str]:
    return VIDEO_DATASETS.names()


def get_spec(name: str) -> VideoDatasetSpec:
    try:
        return VIDEO_DATASETS.get(name)
    except KeyError as err:
        raise ValueError(err.args[0]) from None


@dataclass(frozen=True)
class VideoParams:
    """Builder parameters of a YouTube dataset (``datasets.<name>.params`` in the config)."""

    metadata: Path | None = None
    metadata_url: str | None = None
    metadata_sha256: str | None = None
    metadata_dir: Path = Path("resources/metadata")
    preprocessed: Path | None = None
    raw_videos: Path | None = None
    download: dict | None = field(default_factory=dict)
    downloads_dir: Path = Path("resources/downloads")
    keep_downloads: bool = False
    size: tuple[int, int] | None = None
    # The papers' frames: scikit-image 0.14.2's resize (data_prep/legacy_resize.py).
    resize: str = "paper"
    workers: int = 1
    progress: bool = True

    KEYS = ("metadata", "metadata_url", "metadata_sha256", "metadata_dir", "preprocessed",
            "raw_videos", "download", "downloads_dir", "keep_downloads", "size", "resize",
            "workers", "progress")

    @classmethod
    def from_dict(cls, params: dict) -> VideoParams:
        unknown = sorted(set(params) - set(cls.KEYS))
        if unknown:
            raise ValueError(f"dataset params: unknown key(s) {unknown}; known: {list(cls.KEYS)}")
        download = params.get("download", {})
        if download is False:
            download = None
        if download is not None and not isinstance(download, dict):
            raise ValueError("dataset params: download must be a mapping of yt-dlp settings or false")
        size = params.get("size")
        if size is not None:
            size = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
            if len(size) != 2 or min(size) <= 0:
                raise ValueError(f"dataset params: size {params['size']!r} must be N or [H, W]")
        try:
            resize = check_resize(params.get("resize", "paper"))
        except ValueError as err:
            raise ValueError(f"dataset params: {err}") from None
        for key in ("preprocessed", "raw_videos", "metadata"):
            value = params.get(key)
            if value is not None and not Path(value).exists():
                raise ValueError(f"dataset params: {key} {value} does not exist")

        def path(key: str, default: Path | None) -> Path | None:
            value = params.get(key)
            return Path(value) if value is not None else default

        return cls(
            metadata=path("metadata", None),
            metadata_url=params.get("metadata_url"),
            metadata_sha256=params.get("metadata_sha256"),
            metadata_dir=path("metadata_dir", cls.metadata_dir),
            preprocessed=path("preprocessed", None),
            raw_videos=path("raw_videos", None),
            download=download,
            downloads_dir=path("downloads_dir", cls.downloads_dir),
            keep_downloads=bool(params.get("keep_downloads", False)),
            size=size,
            resize=resize,
            workers=int(params.get("workers", 1)),
            progress=bool(params.get("progress", True)),
        )

    def frame_size(self, spec: VideoDatasetSpec) -> tuple[int, int]:
        return self.size or spec.size

    def sources(self, spec: VideoDatasetSpec) -> VideoSources:
        download = None
        if self.download is not None and self.download.get("enabled", True):
            download = DownloadOptions.from_dict(self.download, self.downloads_dir / spec.name)
        return VideoSources(self.preprocessed, self.raw_videos, download)


# ---------------------------------------------------------------- stage 1: metadata


def metadata_path(spec: VideoDatasetSpec, params: VideoParams) -> Path:
    """Where the table is read from: the user's path, else the fetched copy."""
    if params.metadata is not None:
        return params.metadata
    return params.metadata_dir / f"{spec.name}-metadata.csv"


def fetch_metadata(spec: VideoDatasetSpec, params: VideoParams) -> Path:
    """Fetch the official table (pinned URL + SHA-256) unless the user gave one."""
    if params.metadata is not None:
        return params.metadata
    url = params.metadata_url or spec.metadata_url
    sha = params.metadata_sha256 if params.metadata_url else spec.metadata_sha256
    if url is None:
        raise MetadataError(
            f"{spec.name}: no official metadata URL; give the table with params.metadata. "
            f"{spec.metadata_help}"
        )
    dest = metadata_path(spec, params)
    try:
        return fetch_file(url, dest, sha, progress=params.progress)
    except FetchError as exc:
        raise MetadataError(
            f"{spec.name}: {exc}. On a machine without internet access, download {url} "
            f"and pass it with params.metadata (or place it at {dest})."
        ) from exc


def preparation(spec: VideoDatasetSpec, params: VideoParams) -> dict[str, str]:
    """What decides a prepared frame's pixels besides the source video: part of the dataset's
    identity (``preparation.json``), shown in docs/datasets.md."""
    return {
        "resize": params.resize,
        "size": format_size(params.frame_size(spec)),
        "bbox": "int(x / (width / decoded_width)), as video-preprocessing",
        "partition": "the first row of each video_id, as video-preprocessing",
    }


def _has_frames(root: Path) -> bool:
    return any(p.is_dir() and any(p.iterdir()) for p in (root / "train", root / "test"))


def check_preparation(root: Path, wanted: dict[str, str]) -> None:
    """Refuse to add frames of preparation ``wanted`` to a folder whose frames were made otherwise
    (a finished chunk is never redone, so the dataset would silently mix two resizes). Frames with
    no record at all were made before animbench recorded it (stage 1 writes the record first)."""
    path = root / PREPARATION_NAME
    if not _has_frames(root):
        return
    have = json.loads(path.read_text()) if path.is_file() else None
    if have is not None and all(have.get(k) == v for k, v in wanted.items()):
        return
    made = ("by an animbench that did not record how (resize 'reference' = today's 'modern', "
            "bbox x * w // W, both partitions)" if have is None else
            ", ".join(f"{k} {have.get(k)!r}" for k in wanted if have.get(k) != wanted[k]))
    asked = ", ".join(f"{k} {v!r}" for k, v in wanted.items() if have is None or have.get(k) != v)
    raise MetadataError(
        f"{root} holds frames made {made if have is None else 'with ' + made}; this config asks "
        f"for {asked}. One dataset's frames come from one preparation: move {root} away (or set "
        "paths.datasets elsewhere) and rerun, or set the dataset's params to what made it"
    )


def prepare_metadata(spec: VideoDatasetSpec, params: VideoParams, root: Path) -> list[Chunk]:
    """Stage 1: validate the table into ``root/chunks.csv`` and ``root/metadata_errors.csv``."""
    root = Path(root)
    check_preparation(root, preparation(spec, params))
    source = fetch_metadata(spec, params)
    chunks, remarks = read_metadata(source, spec.require_person_id)
    errors = [b for b in remarks if b.severity == "error"]
    if spec.check_table is not None:
        spec.check_table(source, chunks, errors)
    if not chunks:
        raise MetadataError(f"metadata file {source}: no valid row ({len(errors)} rejected, "
                            f"first: line {errors[0].line}: {errors[0].reason})" if errors else
                            f"metadata file {source} has no rows")
    root.mkdir(parents=True, exist_ok=True)
    write_bad_rows(root / BAD_ROWS_NAME, remarks)
    write_text(root / SOURCE_NAME, json.dumps({
        "dataset": spec.name,
        "path": str(source),
        "url": None if params.metadata is not None else (params.metadata_url or spec.metadata_url),
        "sha256": file_sha256(source),
        "valid_rows": len(chunks),
        "rejected_rows": len(errors),
        "warnings": len(remarks) - len(errors),
    }, indent=2) + "\n")
    write_text(root / PREPARATION_NAME, json.dumps(preparation(spec, params), indent=2) + "\n")
    write_chunks(root / CHUNKS_NAME, chunks)  # last: it is the stage's Snakemake output
    return chunks


def video_ids(root: Path) -> list[str]:
    """YouTube ids of the chunks table (sorted), one stage-2 job each."""
    return sorted(group_by_video(read_chunks(root / CHUNKS_NAME)))


# ---------------------------------------------------------------- stage 2: one video


def status_path(root: Path, youtube_id: str) -> Path:
    return root / STATUS_DIR / f"{youtube_id}.csv"


def _row(result: ChunkResult, size: tuple[int, int], source: str) -> dict[str, str]:
    c = result.chunk
    return {"video": c.name, "split": c.partition, "frames": str(result.frames),
            "size": format_size(size) if result.status == "ok" else "",
            "source": source, "status": result.status, "reason": result.reason}


def prepare_video(
    spec: VideoDatasetSpec,
    params: VideoParams,
    root: Path,
    youtube_id: str,
    chunks: list[Chunk] | None = None,
    downloader: Callable[..., object] | None = None,
) -> Path:
    """Stage 2: make every chunk of ``youtube_id`` available, or record why it is not.

    Resumes: finished chunk folders are kept, only the rest is redone. Returns the status file.
    ``downloader`` replaces :func:`download_video` (tests only).
    """
    root = Path(root)
    if (root / PREPARATION_NAME).is_file():  # stage 1 wrote it; a direct call may come without
        check_preparation(root, preparation(spec, params))
    if chunks is None:
        chunks = group_by_video(read_chunks(root / CHUNKS_NAME)).get(youtube_id)
        if not chunks:
            raise MetadataError(f"{root / CHUNKS_NAME} has no chunk of video {youtube_id!r}")
    size = params.frame_size(spec)
    sources = params.sources(spec)
    rows: dict[tuple[str, str], dict[str, str]] = {}
    todo: list[Chunk] = []
    for c in chunks:
        pre = find_preprocessed(sources.preprocessed, c) if sources.preprocessed else None
        if pre is not None:
            if chunk_dir(root, c).is_dir():
                result = ChunkResult(c, "ok", len(list(chunk_dir(root, c).glob("*.png"))))
            else:
                result = import_preprocessed(pre, c, root, size, resize=params.resize)
            if result.status == "ok":
                rows[c.key] = _row(result, size, f"preprocessed:{pre}")
                continue
            # A broken preprocessed copy: recorded if no other source has the chunk either.
            rows[c.key] = _row(result, size, f"preprocessed:{pre}")
        todo.append(c)
    if todo:
        video, source, reason = None, "", ""
        if sources.raw_videos is not None:
            video = find_raw_video(sources.raw_videos, youtube_id)
            source = f"raw:{video}" if video else ""
        if video is None and all(chunk_dir(root, c).is_dir() for c in todo):
            # Resumed after the crop finished but before the status was written.
            source = "resumed"
            video = None
        elif video is None and sources.download is not None:
            url = sources.download.url_template.format(id=youtube_id)
            result = (downloader or download_video)(youtube_id, sources.download)
            video, reason = result.path, result.reason
            source = f"download:{url}"
            if video is None and TRANSIENT_MARK not in reason:
                # Permanent failure: drop partial files; a transient one keeps them to resume.
                remove_partial(sources.download.out_dir, youtube_id)
        elif video is None:
            reason = (f"not in the preprocessed folder, no raw video {youtube_id}.* in "
                      f"{sources.raw_videos}, and downloading is off")
        if video is not None or source == "resumed":
            results = cut_chunks(video, todo, root, size, progress=params.progress,
                                 resize=params.resize) if video \
                else [ChunkResult(c, "ok", len(list(chunk_dir(root, c).glob("*.png")))) for c in todo]
            for r in results:
                rows[r.chunk.key] = _row(r, size, source)
            if video is not None and source.startswith("download:") and not params.keep_downloads:
                os.remove(video)
        else:
            for c in todo:
                done = chunk_dir(root, c)
                if done.is_dir():  # finished by an earlier, interrupted run: still available
                    rows[c.key] = _row(ChunkResult(c, "ok", len(list(done.glob("*.png")))),
                                        size, "resumed")
                elif c.key not in rows:  # else keep the broken preprocessed copy's record
                    rows[c.key] = _row(ChunkResult(c, "missing", 0, reason), size, source)
    out = status_path(root, youtube_id)
    with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=STATUS_COLUMNS)
        writer.writeheader()
        for c in chunks:
            writer.writerow(rows[c.key])
    return out


def is_transient(path: Path) -> bool:
    """Whether a status file records a failure worth retrying (rate limit, network error)."""
    return any(TRANSIENT_MARK in row["reason"] for row in read_status(path))


def forget_transient(root: Path) -> list[str]:
    """Delete the status files of videos that failed transiently, so the next run retries them."""
    removed = []
    for path in sorted((Path(root) / STATUS_DIR).glob("*.csv")):
        if is_transient(path):
            path.unlink()
            removed.append(path.stem)
    return removed


# ---------------------------------------------------------------- stage 3: assemble


def read_status(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise MetadataError(f"status file {path} does not exist: the video's job has not run")
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def assemble(spec: VideoDatasetSpec, root: Path) -> Path:
    """Stage 3: manifest, per-chunk availability and per-split summary from the status files."""
    root = Path(root)
    chunks = read_chunks(root / CHUNKS_NAME)
    rows: list[dict[str, str]] = []
    for youtube_id in sorted(group_by_video(chunks)):
        rows.extend(read_status(status_path(root, youtube_id)))
    with open(root / BAD_ROWS_NAME, newline="", encoding="utf-8") as handle:
        remarks = list(csv.DictReader(handle))
    bad = [b for b in remarks if b["severity"] == "error"]
    write_availability(root, rows, bad, len(remarks) - len(bad), spec.protocol_counts)
    manifest = [{k: r[k] for k in ("video", "split", "frames", "size", "source", "status")}
                for r in rows]
    return write_manifest(root / "manifest.csv", manifest)


# ---------------------------------------------------------------- all stages in one process


def _video_job(args: tuple) -> str:
    spec_name, params, root, youtube_id, chunks = args
    prepare_video(get_spec(spec_name), params, root, youtube_id, chunks)
    return youtube_id


def build(spec: VideoDatasetSpec, params: dict, out_dir: Path) -> Path:
    """Run the three stages into ``out_dir`` (resumable) and return it."""
    parsed = VideoParams.from_dict(params)
    out_dir = Path(out_dir)
    chunks = prepare_metadata(spec, parsed, out_dir)
    groups = group_by_video(chunks)
    todo = [(spec.name, parsed, out_dir, vid, cs) for vid, cs in sorted(groups.items())
            if not status_path(out_dir, vid).is_file() or is_transient(status_path(out_dir, vid))]
    bar = tqdm(total=len(groups), initial=len(groups) - len(todo), unit="video",
               desc=spec.name, disable=not parsed.progress)
    if parsed.workers > 1 and len(todo) > 1:
        # spawn, not fork: the parent may hold threads (torch, tqdm) that fork would copy mid-lock.
        with multiprocessing.get_context("spawn").Pool(parsed.workers) as pool:
            for _ in pool.imap_unordered(_video_job, todo):
                bar.update()
    else:
        for job in todo:
            _video_job(job)
            bar.update()
    bar.close()
    assemble(spec, out_dir)
    return out_dir


__all__ = [
    "VIDEO_DATASETS", "VideoDatasetSpec", "VideoParams", "assemble", "build", "list_video_datasets",
    "fetch_metadata", "get_spec", "prepare_metadata", "prepare_video", "register_video_dataset",
    "video_ids",
]
