"""Where a chunk's frames come from, in the order a user wants them.

1. an already-preprocessed copy of the dataset (many groups hold one): ``{folder}/{split}/{name}``
   as a folder of PNG frames (also accepted with the reference's ``.mp4`` suffix on the folder
   name) or as an ``.mp4`` file of the cropped chunk;
2. the user's own raw videos, one file per YouTube id: ``{folder}/{youtube_id}.mp4`` (or .mkv,
   .webm, ...);
3. a download with yt-dlp (:mod:`data_prep.download`).

The first two never touch the network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from data_prep.download import VIDEO_EXTENSIONS, DownloadOptions
from data_prep.metadata import Chunk
from data_prep.preprocess import (
    ChunkResult,
    DecodeError,
    chunk_dir,
    clear_stale,
    iter_frames,
    resize_frame,
)
from data_prep.video import VideoError, frame_name, list_frames, read_frame


@dataclass(frozen=True)
class VideoSources:
    """The sources to try, each optional; ``download=None`` means no network."""

    preprocessed: Path | None = None
    raw_videos: Path | None = None
    download: DownloadOptions | None = None


def find_preprocessed(folder: Path, chunk: Chunk) -> Path | None:
    """The chunk in an already-preprocessed dataset folder, as a PNG folder or an mp4 file."""
    base = folder / chunk.partition / chunk.name
    for candidate in (base, base.with_name(base.name + ".mp4")):
        if candidate.exists():
            return candidate
    return None


def find_raw_video(folder: Path, youtube_id: str) -> Path | None:
    """The user's raw video for ``youtube_id`` in ``folder``, if any."""
    for ext in VIDEO_EXTENSIONS:
        path = folder / f"{youtube_id}{ext}"
        if path.is_file():
            return path
    return None


def import_preprocessed(
    src: Path, chunk: Chunk, root: Path, size: tuple[int, int], compress_level: int = 1,
    resize: str = "paper",
) -> ChunkResult:
    """Copy a preprocessed chunk into ``root`` (atomically), checking every frame decodes.

    PNG frames of the right size are copied byte for byte; other sizes are resized, and an
    mp4 chunk is decoded (lossy: its source column says so).
    """
    dest = chunk_dir(root, chunk)
    clear_stale(root, chunk)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{chunk.name}.", suffix=".tmp"))
    count = 0
    try:
        if src.is_dir():
            for i, path in enumerate(list_frames(src)):
                frame = read_frame(path)  # decodes fully: a corrupt frame stops here
                if frame.shape[:2] == tuple(size):
                    shutil.copyfile(path, tmp / frame_name(i))
                else:
                    Image.fromarray(resize_frame(frame, size, resize)).save(
                        tmp / frame_name(i), format="PNG", compress_level=compress_level)
                count += 1
        else:
            for i, (_, frame) in enumerate(iter_frames(src)):
                Image.fromarray(resize_frame(frame, size, resize)).save(
                    tmp / frame_name(i), format="PNG", compress_level=compress_level)
                count += 1
        if count == 0:
            return ChunkResult(chunk, "corrupt", 0, f"preprocessed copy {src} has no frames")
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
    except (VideoError, DecodeError) as exc:
        return ChunkResult(chunk, "corrupt", 0, f"preprocessed copy: {exc}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ChunkResult(chunk, "ok", count)
