"""The one animation routine: a source image moved by a driving video, for every method.

Three modes, as in the reference implementations (FOMM Sec. 3.5, MRAA Sec. 3.4):

- ``standard``: the driving frame's own motion descriptor (absolute keypoints/regions).
- ``relative``: the driving video's motion since its first frame, applied to the source's
  descriptor (``model.relative_motion``), with displacements rescaled by the ratio of the
  square roots of the source's and the first driving frame's keypoint convex-hull areas.
- ``avd``: the AVD network's output for (source identity, driving pose); the checkpoint needs
  an ``avd_network`` entry (``animbench train-avd``).

Input: the source image is centre-cropped to a square and resized to the model's
``frame_shape`` (bilinear, antialiased); so is every driving frame. The driving video is an
mp4/gif/any format imageio-ffmpeg reads, or a folder of PNG frames (``data_prep.video``).
Output: ``.mp4`` (H.264 via imageio-ffmpeg), ``.gif``, or a folder of PNG frames when the
path has no suffix; written atomically.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from methods.base import AnimationModel, Motion, expand_features

log = logging.getLogger(__name__)

MODES = ("standard", "relative", "avd")
VIDEO_SUFFIXES = (".mp4", ".gif")


class AnimationError(ValueError):
    """Bad animation input: unreadable source or driving video, wrong mode, no AVD network."""


# --- input ------------------------------------------------------------------------------------


def fit_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop ``frame`` (H, W, 3) uint8 to a square and resize it to ``size`` = (H, W).

    Bilinear resampling (PIL's, which low-pass filters when shrinking). A frame already of
    ``size`` is returned unchanged.
    """
    height, width = frame.shape[:2]
    if (height, width) == tuple(size):
        return frame
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(np.ascontiguousarray(frame[top:top + side, left:left + side]))
    return np.array(square.resize((size[1], size[0]), Image.Resampling.BILINEAR))


def read_source(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """The source image as (H, W, 3) uint8, fitted to ``size`` (see :func:`fit_frame`).

    Any image PIL reads; grey, palette and opaque RGBA images are converted to RGB.
    """
    path = Path(path)
    if not path.is_file():
        raise AnimationError(f"source image {path} does not exist")
    try:
        with Image.open(path) as img:
            img.load()
            rgb = np.array(img.convert("RGB"))  # writable: torch.from_numpy warns otherwise
    except (OSError, SyntaxError, ValueError) as err:
        raise AnimationError(f"source image {path} is unreadable: {err}") from err
    return fit_frame(rgb, size)


@dataclass
class DrivingVideo:
    """A driving video opened for streaming: ``frames`` yields fitted (H, W, 3) uint8 frames."""

    path: Path
    frames: Iterator[np.ndarray]
    fps: float
    #: Number of frames when the container says (for the progress bar), else None.
    count: int | None


def _png_folder_frames(path: Path, size: tuple[int, int]) -> Iterator[np.ndarray]:
    from data_prep.video import list_frames, read_frame

    for frame_path in list_frames(path):
        yield fit_frame(read_frame(frame_path), size)


def _ffmpeg_frames(reader: Iterator[bytes], source_size: tuple[int, int],
                   size: tuple[int, int]) -> Iterator[np.ndarray]:
    width, height = source_size
    for buffer in reader:
        yield fit_frame(np.frombuffer(buffer, np.uint8).reshape(height, width, 3), size)


def open_driving(path: str | Path, size: tuple[int, int], default_fps: float = 25.0) -> DrivingVideo:
    """Open a driving video (anything ffmpeg decodes, or a folder of ``0000000.png`` frames).

    Raises :class:`AnimationError` naming ``path`` when it is missing, unreadable or empty; the
    first frame is decoded here, so an empty video fails before any work is done.
    """
    from data_prep.video import VideoError

    path = Path(path)
    if path.is_dir():
        try:
            frames: Iterator[np.ndarray] = _png_folder_frames(path, size)
            first = next(frames)
        except VideoError as err:
            raise AnimationError(f"driving video {path}: {err}") from err
        count = len(list(path.glob("*.png")))
        fps = default_fps
    elif not path.is_file():
        raise AnimationError(f"driving video {path} does not exist")
    else:
        import imageio_ffmpeg

        try:
            reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
            meta = next(reader)
        except (OSError, RuntimeError, StopIteration) as err:
            # imageio-ffmpeg puts ffmpeg's whole log in the message; its last line says why.
            reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise AnimationError(f"driving video {path} is unreadable by ffmpeg: {reason}") from err
        frames = _ffmpeg_frames(reader, meta["size"], size)
        try:
            first = next(frames)
        except StopIteration:
            raise AnimationError(f"driving video {path} holds no frames") from None
        except (OSError, RuntimeError) as err:
            raise AnimationError(f"driving video {path} is unreadable by ffmpeg: {err}") from err
        fps = float(meta.get("fps") or default_fps)
        duration = meta.get("duration")
        count = round(duration * fps) if duration else None

    def chained() -> Iterator[np.ndarray]:
        yield first
        yield from frames

    return DrivingVideo(path, chained(), fps, count)


# --- the animation loop -------------------------------------------------------------------------


def _to_tensor(frames: list[np.ndarray], device: torch.device | str) -> torch.Tensor:
    batch = torch.from_numpy(np.stack(frames)).to(device)
    return batch.permute(0, 3, 1, 2).float().div_(255)


def _expand(motion: Motion, batch: int) -> Motion:
    return {k: v.expand(batch, *v.shape[1:]) for k, v in motion.items()}


def _batches(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def animate_frames(
    model: AnimationModel,
    source: np.ndarray,
    driving: Iterable[np.ndarray],
    mode: str = "relative",
    adapt_movement_scale: bool = True,
    batch_size: int = 8,
) -> Iterator[np.ndarray]:
    """Yield the animated frames, (H, W, 3) uint8 (truncation of 255*x, as reconstructions).

    ``source`` and the driving frames are (H, W, 3) uint8 at the model's resolution. Driving
    frames are processed ``batch_size`` at a time; the result does not depend on it beyond
    floating-point noise (the networks run in eval mode).
    """
    from data_prep.video import to_uint8

    if mode not in MODES:
        raise AnimationError(f"unknown animation mode {mode!r}; choose one of {', '.join(MODES)}")
    avd_network = getattr(model, "avd_network", None)
    if mode == "avd" and avd_network is None:
        raise AnimationError("mode avd needs an avd_network in the checkpoint; train one with `animbench train-avd`")
    device = next(model.parameters()).device
    source_t = _to_tensor([source], device)
    motion_source = model.encode(source_t)
    features = model.encode_source(source_t)
    motion_initial: Motion | None = None
    for frames in _batches(driving, batch_size):
        driving_t = _to_tensor(frames, device)
        motion_driving = model.encode(driving_t)
        batch = driving_t.shape[0]
        if mode == "standard":
            motion = motion_driving
        elif mode == "relative":
            if motion_initial is None:
                motion_initial = {k: v[:1] for k, v in motion_driving.items()}
            motion = model.relative_motion(
                _expand(motion_source, batch), motion_driving, _expand(motion_initial, batch),
                adapt_movement_scale=adapt_movement_scale,
            )
        else:
            from methods.models.avd import avd_transfer

            motion = avd_transfer(model, avd_network, _expand(motion_source, batch), motion_driving)
        out = model.generate(
            source_t.expand(batch, -1, -1, -1), _expand(motion_source, batch), motion,
            expand_features(features, batch),
        )
        yield from to_uint8(out["prediction"].permute(0, 2, 3, 1))


# --- output ---------------------------------------------------------------------------------------


def write_animation(path: str | Path, frames: Iterable[np.ndarray], fps: float = 25.0) -> int:
    """Write frames to ``path`` atomically: ``.mp4`` (H.264, streamed), ``.gif``, or a PNG folder
    (no suffix). Returns the number of frames written."""
    from data_prep.io import atomic_path

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (*VIDEO_SUFFIXES, ""):
        raise AnimationError(f"output {path}: use .mp4, .gif, or a folder name without a suffix")
    if suffix == "":
        from data_prep.video import write_video

        stacked = np.stack(list(frames))
        write_video(path, stacked)
        return len(stacked)
    count = 0
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            images = [Image.fromarray(f) for f in frames]
            count = len(images)
            if not images:
                raise AnimationError(f"output {path}: no frames to write")
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                           duration=round(1000 / fps), loop=0)
        else:
            import imageio_ffmpeg

            writer = None
            for frame in frames:
                if writer is None:
                    height, width = frame.shape[:2]
                    # -f mp4: the temporary name has no .mp4 suffix for ffmpeg to guess from.
                    writer = imageio_ffmpeg.write_frames(
                        str(tmp), (width, height), fps=fps, codec="libx264", quality=8,
                        macro_block_size=2, output_params=["-f", "mp4"], ffmpeg_log_level="error",
                    )
                    writer.send(None)
                writer.send(np.ascontiguousarray(frame))
                count += 1
            if writer is None:
                raise AnimationError(f"output {path}: no frames to write")
            writer.close()
    return count


def animate_file(
    checkpoint: str | Path,
    source: str | Path,
    driving: str | Path,
    out: str | Path,
    mode: str = "relative",
    method_config: dict | None = None,
    device: str = "cpu",
    batch_size: int = 8,
    adapt_movement_scale: bool | None = None,
    progress: bool = True,
) -> int:
    """``animbench animate``: load, read, animate, write. Returns the number of frames written.

    ``adapt_movement_scale=None`` takes the config's
    ``animate_params.normalization_params.adapt_movement_scale``, else True (MRAA's and
    TPSMM's default; FOMM's reference configs set it per dataset).
    """
    from methods.engine.checkpoints import load_model

    if mode not in MODES:
        raise AnimationError(f"unknown animation mode {mode!r}; choose one of {', '.join(MODES)}")
    model, payload = load_model(checkpoint, method_config)
    if mode == "avd" and getattr(model, "avd_network", None) is None:
        raise AnimationError(
            f"checkpoint {checkpoint} has no avd_network entry, which mode avd needs; train one with "
            f"`animbench train-avd --checkpoint {checkpoint} --dataset <dataset> --out <checkpoint_avd.pt>`"
        )
    from data_prep.devices import resolve_device

    model.to(resolve_device(device))
    config = method_config or payload["animbench"]["config"]
    if adapt_movement_scale is None:
        normalization = config.get("animate_params", {}).get("normalization_params", {})
        adapt_movement_scale = bool(normalization.get("adapt_movement_scale", True))
    size = tuple(config["dataset_params"]["frame_shape"][:2])
    source_frame = read_source(source, size)
    video = open_driving(driving, size)
    frames = tqdm(video.frames, total=video.count, desc=f"animate ({mode})", unit="frame",
                  disable=not progress)
    animated = animate_frames(model, source_frame, frames, mode=mode,
                              adapt_movement_scale=adapt_movement_scale, batch_size=batch_size)
    return write_animation(out, animated, fps=video.fps)
