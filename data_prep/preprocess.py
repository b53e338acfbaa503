"""Cut chunks out of one source video: frame range, bbox crop, anti-aliased resize, PNG frames.

The video is decoded once, as a stream, by the ffmpeg binary that ``imageio-ffmpeg`` ships;
every frame goes straight to the chunks that contain it and is written to disk, so memory holds
one frame, never a video. Rules (from the public video-preprocessing protocol):

- frame ``i`` of a video decoded at ``fps`` belongs to a chunk when
  ``start / meta_fps <= i / fps < end / meta_fps`` (``start``/``end`` are frame numbers at the
  metadata's ``meta_fps``), i.e. the chunk's time interval, whatever the downloaded frame rate;
- the bbox is given in the metadata's ``width x height`` and is scaled to the decoded
  resolution as the reference script computes it, ``int(x / (width / decoded_width))`` in
  floating point (not ``x * decoded_width // width``: 640 / (1280 / 854) = 426.99999 gives 426),
  then clipped to the frame;
- the crop is resized to the dataset size with anti-aliasing (:func:`resize_frame`): ``paper``,
  scikit-image 0.14.2's ``resize(anti_aliasing=True)`` + ``img_as_ubyte`` reproduced
  (:mod:`data_prep.legacy_resize`; the frames of every published table), ``modern``, the same
  call on today's scikit-image, or ``pil``, PIL's bilinear filter.

Each chunk is written into a hidden temporary folder and renamed into place when complete, so
an interrupted run leaves either a finished chunk or nothing that a later run would trust.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from data_prep.decode_errors import decode_failure, mp4_truncation
from data_prep.metadata import Chunk
from data_prep.video import frame_name


class DecodeError(RuntimeError):
    """The source video cannot be decoded (corrupt, truncated header, not a video)."""


@dataclass(frozen=True)
class ChunkResult:
    """What became of one chunk: ``status`` ok/missing/corrupt, frames written, and why."""

    chunk: Chunk
    status: str
    frames: int
    reason: str = ""


def scale_bbox(chunk: Chunk, decoded_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The chunk's bbox in pixels of a decoded frame of ``(height, width)``, clipped to it."""
    h, w = decoded_size
    # The reference's float arithmetic, truncated by int(): kept as is so that crops match.
    left = int(chunk.left / (chunk.width / w))
    right = int(chunk.right / (chunk.width / w))
    top = int(chunk.top / (chunk.height / h))
    bottom = int(chunk.bottom / (chunk.height / h))
    left, right = max(0, min(left, w)), max(0, min(right, w))
    top, bottom = max(0, min(top, h)), max(0, min(bottom, h))
    return left, top, right, bottom


def in_chunk(index: int, fps: float, chunk: Chunk) -> bool:
    """Whether decoded frame ``index`` (at ``fps``) lies in the chunk's time interval."""
    # Cross-multiplied as in the protocol, so equal frame rates give exactly [start, end).
    return index * chunk.fps >= chunk.start * fps and index * chunk.fps < chunk.end * fps


def expected_frames(chunk: Chunk, fps: float) -> int:
    """How many frames a complete chunk has when the video is decoded at ``fps``."""
    first = math.ceil(chunk.start * fps / chunk.fps)
    last = math.ceil(chunk.end * fps / chunk.fps)  # exclusive
    # Guard the float rounding of ceil at exact multiples with the protocol's own test.
    while first > 0 and in_chunk(first - 1, fps, chunk):
        first -= 1
    while not in_chunk(first, fps, chunk) and first < last:
        first += 1
    while last > first and not in_chunk(last - 1, fps, chunk):
        last -= 1
    while in_chunk(last, fps, chunk):
        last += 1
    return last - first


RESIZE_METHODS = ("paper", "modern", "pil")
#: Old names, refused with the new ones (a dataset's resize is part of what made its frames).
RENAMED_RESIZE = {"reference": "'modern' (today's scikit-image) or 'paper' (0.14.2, as the papers)"}


def check_resize(method: str) -> str:
    """``method`` if it is a known resize; else a ValueError saying what to write instead."""
    if method in RENAMED_RESIZE:
        raise ValueError(f"resize {method!r} was renamed: use {RENAMED_RESIZE[method]}")
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize {method!r} is not one of {list(RESIZE_METHODS)}")
    return method


def resize_frame(frame: np.ndarray, size: tuple[int, int], method: str = "paper") -> np.ndarray:
    """Resize an RGB uint8 frame to ``size`` (H, W) with anti-aliasing.

    ``paper``: ``img_as_ubyte(resize(crop, size, anti_aliasing=True))`` as scikit-image 0.14.2
    computed it, the call and version of the reference preparation (the published frames;
    :mod:`data_prep.legacy_resize`). ``modern``: the same call on today's scikit-image (reflect
    padding, float Gaussian: no dark border; 0.5-1 levels brighter on average). ``pil``: PIL's
    bilinear filter, whose support widens when shrinking (anti-aliased; faster, not identical).
    """
    check_resize(method)
    h, w = size
    if frame.shape[:2] == (h, w):
        return frame
    if method == "paper":
        from data_prep.legacy_resize import skimage014_resize_ubyte

        return skimage014_resize_ubyte(frame, (h, w))
    if method == "modern":
        from skimage import img_as_ubyte
        from skimage.transform import resize

        return img_as_ubyte(resize(frame, (h, w), anti_aliasing=True))
    return np.asarray(Image.fromarray(frame).resize((w, h), Image.Resampling.BILINEAR))


def crop_resize(
    frame: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int],
    method: str = "paper",
) -> np.ndarray:
    """Crop ``frame`` to ``box`` (left, top, right, bottom) and resize to ``size`` (H, W)."""
    left, top, right, bottom = box
    return resize_frame(np.ascontiguousarray(frame[top:bottom, left:right]), size, method)


def probe_video(path: str | os.PathLike) -> dict:
    """ffmpeg's header for ``path``: ``fps`` and ``size`` (W, H); DecodeError when unreadable."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(gen)
    except (OSError, RuntimeError, StopIteration) as exc:
        raise DecodeError(f"cannot decode {path}: {decode_failure(path, str(exc) or repr(exc))}") from exc
    finally:
        gen.close()
    if not meta.get("fps") or not meta.get("size"):
        raise DecodeError(f"cannot decode {path}: no frame rate or size in its header")
    return meta


def iter_frames(path: str | os.PathLike):
    """Yield ``(fps, frame)`` for every decoded RGB frame of ``path`` (streaming)."""
    import imageio_ffmpeg

    meta = probe_video(path)
    w, h = meta["size"]
    fps = float(meta["fps"])
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        next(gen)
        for raw in gen:
            yield fps, np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)
    except (OSError, RuntimeError) as exc:
        raise DecodeError(f"cannot decode {path}: {decode_failure(path, str(exc) or repr(exc))}") from exc
    finally:
        gen.close()


def chunk_dir(root: Path, chunk: Chunk) -> Path:
    return root / chunk.partition / chunk.name


def clear_stale(root: Path, chunk: Chunk) -> None:
    """Remove half-written temporary folders of ``chunk`` left by a killed run."""
    parent = root / chunk.partition
    if parent.is_dir():
        for stale in parent.glob(f".{glob_escape(chunk.name)}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def cut_chunks(
    video: str | os.PathLike,
    chunks: list[Chunk],
    root: str | os.PathLike,
    size: tuple[int, int],
    progress: bool = False,
    compress_level: int = 1,
    resize: str = "paper",
) -> list[ChunkResult]:
    """Write every chunk of ``chunks`` (all cut from ``video``) under ``root/{train,test}/``.

    Chunks whose folder already exists are complete (they were renamed into place) and are
    not redone. A video that cannot be decoded marks its unfinished chunks ``corrupt``; a
    chunk the video does not reach is ``missing``.
    """
    root = Path(root)
    todo = [c for c in chunks if not chunk_dir(root, c).is_dir()]
    results = {c.key: ChunkResult(c, "ok", _count(chunk_dir(root, c))) for c in chunks
               if c not in todo}
    if not todo:
        return [results[c.key] for c in chunks]
    tmp_dirs: dict[str, Path] = {}
    counts = dict.fromkeys((c.key for c in todo), 0)
    last_end = max(c.end / c.fps for c in todo)  # seconds: stop decoding after the last chunk
    try:
        for c in todo:
            clear_stale(root, c)
            parent = root / c.partition
            parent.mkdir(parents=True, exist_ok=True)
            tmp_dirs[c.key] = Path(tempfile.mkdtemp(dir=parent, prefix=f".{c.name}.", suffix=".tmp"))
        boxes: dict[str, tuple[int, int, int, int]] = {}
        fps = None
        decoded = 0
        bar = tqdm(desc=Path(video).name, unit="frame", disable=not progress, leave=False)
        try:
            for index, (fps, frame) in enumerate(iter_frames(video)):
                decoded = index + 1
                bar.update()
                if index >= last_end * fps + 1:  # a frame of margin against float rounding
                    break
                for c in todo:
                    if not in_chunk(index, fps, c):
                        continue
                    if c.key not in boxes:
                        boxes[c.key] = scale_bbox(c, frame.shape[:2])
                    box = boxes[c.key]
                    if box[2] <= box[0] or box[3] <= box[1]:
                        continue
                    out = crop_resize(frame, box, size, resize)
                    Image.fromarray(out).save(tmp_dirs[c.key] / frame_name(counts[c.key]),
                                              format="PNG", compress_level=compress_level)
                    counts[c.key] += 1
        except DecodeError as exc:
            for c in todo:
                results[c.key] = ChunkResult(c, "corrupt", 0, str(exc))
            return [results[c.key] for c in chunks]
        finally:
            bar.close()
        if fps is None:
            for c in todo:
                results[c.key] = ChunkResult(c, "corrupt", 0, f"{video} has no frames")
            return [results[c.key] for c in chunks]
        truncated: str | None = None  # checked once, and only when a chunk comes up short
        for c in todo:
            box = boxes.get(c.key)
            if box is not None and (box[2] <= box[0] or box[3] <= box[1]):
                results[c.key] = ChunkResult(c, "corrupt", 0, f"bbox {c.bbox} is empty at the decoded size")
                continue
            want = expected_frames(c, fps)
            if counts[c.key] < want and truncated is None:
                truncated = mp4_truncation(video)
            if counts[c.key] < want and truncated:
                # A cut-off file, not a short video: the chunk is not kept (fetch the file again).
                results[c.key] = ChunkResult(c, "corrupt", 0, f"{video}: {truncated}")
                continue
            if counts[c.key] == 0:
                results[c.key] = ChunkResult(
                    c, "missing", 0,
                    f"the video ends (frame {decoded} at {fps:g} fps) before the chunk starts")
                continue
            os.chmod(tmp_dirs[c.key], 0o755)
            os.replace(tmp_dirs[c.key], chunk_dir(root, c))
            reason = "" if counts[c.key] >= want else f"short: {counts[c.key]} of {want} frames (video ends)"
            results[c.key] = ChunkResult(c, "ok", counts[c.key], reason)
    finally:
        for tmp in tmp_dirs.values():
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return [results[c.key] for c in chunks]


def _count(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.suffix == ".png")
