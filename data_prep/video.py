"""On-disk video IO.

A video is a folder of 7-digit zero-padded PNG frames (``0000000.png``, ``0000001.png``, ...).
Reconstructions may instead be stored as one PNG with the frames stacked horizontally.
Frames are always RGB ``uint8`` arrays of shape ``(H, W, 3)``; PNG keeps them lossless.

Mode policy: frames must be 8-bit RGB. An RGBA frame is accepted only when its alpha channel is
fully opaque (some encoders add a constant alpha); the alpha is then dropped. Any other mode
(grey, palette, 16-bit, translucent RGBA) raises :class:`VideoError`, because silently
converting it would change pixel values that metrics are computed on.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from data_prep.io import atomic_dir, atomic_path

FRAME_DIGITS = 7
_FRAME_RE = re.compile(rf"^\d{{{FRAME_DIGITS}}}\.png$")


class VideoError(ValueError):
    """A video or frame on disk is missing, unreadable or malformed."""


def frame_name(index: int) -> str:
    """File name of frame ``index`` inside a video folder."""
    return f"{index:0{FRAME_DIGITS}d}.png"


def list_frames(video_dir: str | os.PathLike) -> list[Path]:
    """Sorted frame files of the video folder ``video_dir``.

    Raises :class:`VideoError` when the folder is missing or holds no frames, or when the
    frame numbers are not contiguous from 0 (a gap means a frame was lost).
    """
    video_dir = Path(video_dir)
    if not video_dir.is_dir():
        raise VideoError(f"video folder {video_dir} does not exist")
    frames = sorted(p for p in video_dir.iterdir() if _FRAME_RE.match(p.name))
    if not frames:
        raise VideoError(f"video folder {video_dir} holds no frames (expected 0000000.png, ...)")
    for i, p in enumerate(frames):
        if p.name != frame_name(i):
            raise VideoError(f"video folder {video_dir} misses frame {frame_name(i)}")
    return frames


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_8bit_rgb_png(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from the IHDR chunk when ``data`` starts as an 8-bit RGB PNG, else None."""
    if len(data) < 26 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    bit_depth, color_type = data[24], data[25]
    return (height, width) if (bit_depth, color_type) == (8, 2) else None


def _decode_png(path: Path) -> np.ndarray:
    """Decode ``path`` fully into an RGB uint8 array, or raise VideoError naming it.

    8-bit RGB frames, all a dataset or a reconstruction holds, are decoded by OpenCV's libpng
    in about 60% of Pillow's time (0.14 against 0.23 ms for a 64×64 frame; evaluation and
    training read every frame), and without holding the GIL. libpng is the stricter of
    the two (it also refuses a bad chunk checksum or a missing end chunk); whatever it refuses,
    and every other colour type, goes through Pillow, which applies the mode policy and words
    the error, so what is accepted and what is returned do not depend on the decoder.
    """
    if not path.is_file():
        raise VideoError(f"frame {path} does not exist")
    data = path.read_bytes()
    size = _is_8bit_rgb_png(data)
    if size is not None:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
        if arr is not None and arr.shape == (*size, 3):
            return arr
    return _decode_png_pil(path)


def _decode_png_pil(path: Path) -> np.ndarray:
    """Decode ``path`` with Pillow, applying the mode policy; every error names the file."""
    try:
        with Image.open(path) as img:
            if img.format != "PNG":
                raise VideoError(f"frame {path} is not a PNG (format {img.format})")
            # load() decodes every byte, so a truncated or corrupt file fails here, not later.
            img.load()
            mode = img.mode
            arr = np.array(img)  # a writable copy (torch.from_numpy wants one)
    except VideoError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        # PIL reports broken files as OSError (truncated), SyntaxError (bad header/CRC) or
        # ValueError; all mean "cannot be read".
        raise VideoError(f"frame {path} is corrupt or unreadable: {exc}") from exc
    if mode == "RGBA":
        if not np.all(arr[..., 3] == 255):
            raise VideoError(f"frame {path} is RGBA with transparent pixels; expected RGB")
        arr = arr[..., :3]
    elif mode != "RGB":
        raise VideoError(f"frame {path} has mode {mode}; expected 8-bit RGB")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def read_frame(path: str | os.PathLike, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read one frame as an ``(H, W, 3)`` uint8 RGB array.

    ``expected_size`` is ``(H, W)``; a frame of another resolution raises :class:`VideoError`.
    """
    path = Path(path)
    arr = _decode_png(path)
    if expected_size is not None and tuple(arr.shape[:2]) != tuple(expected_size):
        h, w = expected_size
        raise VideoError(f"frame {path} is {arr.shape[0]}x{arr.shape[1]} (HxW); expected {h}x{w}")
    return arr


def _odd_frame_out(frames: list[Path]) -> VideoError:
    """The error for a video whose frames differ in size, blaming the frame(s) that differ from
    the size most frames have (reading PNG headers only), not whichever came second."""
    sizes = []
    for p in frames:
        with Image.open(p) as img:
            sizes.append((img.height, img.width))
    counts: dict[tuple[int, int], int] = {}
    for size in sizes:
        counts[size] = counts.get(size, 0) + 1
    common = max(counts.items(), key=lambda kv: (kv[1], -sizes.index(kv[0])))[0]
    if counts[common] * 2 <= len(frames):
        listing = ", ".join(f"{p.name}: {h}x{w}" for p, (h, w) in zip(frames, sizes, strict=True))
        return VideoError(f"video folder {frames[0].parent} mixes frame sizes (HxW) {listing}")
    odd = [i for i, size in enumerate(sizes) if size != common]
    h, w = sizes[odd[0]]
    return VideoError(
        f"frame {frames[odd[0]]} is {h}x{w} (HxW); the video's other frames are "
        f"{common[0]}x{common[1]}" + (f" ({len(odd)} frames differ)" if len(odd) > 1 else "")
    )


def read_video(
    video_dir: str | os.PathLike,
    expected_size: tuple[int, int] | None = None,
    expected_frames: int | None = None,
) -> np.ndarray:
    """Read a whole video folder as a ``(T, H, W, 3)`` uint8 array.

    All frames must share one resolution (``expected_size`` when given, else the one most frames
    have; the error names the frame that differs). ``expected_frames`` (the manifest's count)
    makes a lost or extra frame an error instead of a shorter or longer video.
    """
    frames = list_frames(video_dir)
    if expected_frames is not None and len(frames) != expected_frames:
        raise VideoError(
            f"video folder {video_dir} holds {len(frames)} frame(s) but the manifest records "
            f"{expected_frames}; re-run the dataset preparation"
        )
    first = read_frame(frames[0], expected_size) if expected_size is not None else _decode_png(frames[0])
    size = first.shape[:2]
    out = np.empty((len(frames), *first.shape), dtype=np.uint8)
    out[0] = first
    for i, p in enumerate(frames[1:], start=1):
        arr = _decode_png(p)
        if arr.shape[:2] != size:
            if expected_size is not None:
                raise VideoError(
                    f"frame {p} is {arr.shape[0]}x{arr.shape[1]} (HxW); expected {size[0]}x{size[1]}"
                )
            raise _odd_frame_out(frames)
        out[i] = arr
    return out


def _check_frames(frames: np.ndarray, what: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise VideoError(f"{what}: frames must be uint8, got {frames.dtype} (use to_uint8)")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise VideoError(f"{what}: frames must have shape (T>0, H, W, 3), got {frames.shape}")
    return frames


def write_video(video_dir: str | os.PathLike, frames: np.ndarray, compress_level: int = 6) -> Path:
    """Write ``frames`` ``(T, H, W, 3)`` uint8 as a PNG folder, atomically (all or nothing).

    An existing folder is replaced only once the new one is complete.
    """
    video_dir = Path(video_dir)
    frames = _check_frames(frames, str(video_dir))
    with atomic_dir(video_dir) as tmp:
        for i, frame in enumerate(frames):
            Image.fromarray(frame, mode="RGB").save(
                tmp / frame_name(i), format="PNG", compress_level=compress_level
            )
    return video_dir


def write_stacked_png(path: str | os.PathLike, frames: np.ndarray) -> Path:
    """Write ``frames`` ``(T, H, W, 3)`` uint8 side by side into one PNG, atomically."""
    path = Path(path)
    frames = _check_frames(frames, str(path))
    t, h, w, _ = frames.shape
    # (T, H, W, 3) -> (H, T, W, 3) -> (H, T*W, 3): frame i occupies columns [i*W, (i+1)*W).
    stacked = np.ascontiguousarray(frames.transpose(1, 0, 2, 3).reshape(h, t * w, 3))
    with atomic_path(path) as tmp:
        Image.fromarray(stacked, mode="RGB").save(tmp, format="PNG")
    return path


def read_stacked_png(path: str | os.PathLike, frame_width: int) -> np.ndarray:
    """Read a horizontally stacked PNG back as ``(T, H, frame_width, 3)`` uint8 frames."""
    path = Path(path)
    if frame_width <= 0:
        raise VideoError(f"{path}: frame_width must be positive, got {frame_width}")
    arr = _decode_png(path)
    h, total_w, _ = arr.shape
    if total_w % frame_width != 0:
        raise VideoError(
            f"stacked PNG {path} is {total_w} px wide, not a multiple of frame width {frame_width}"
        )
    t = total_w // frame_width
    return np.ascontiguousarray(arr.reshape(h, t, frame_width, 3).transpose(1, 0, 2, 3))


def to_uint8(x) -> np.ndarray:
    """Convert floats in [0, 1] to uint8 by truncation: ``(255 * x.clip(0, 1)).astype(uint8)``.

    This is the evaluation protocol's rule (truncation, not rounding). Accepts a numpy array or
    a torch tensor (any device); the arithmetic runs in the input's float dtype so both give
    identical results. Layout is kept as is (no channel permutation). NaN raises ValueError.
    """
    if hasattr(x, "detach"):  # torch tensor, without importing torch for numpy-only callers
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"to_uint8 expects a float array, got {x.dtype}")
    if np.isnan(x).any():
        raise ValueError("to_uint8: input contains NaN")
    return (x.dtype.type(255) * x.clip(0, 1)).astype(np.uint8)
