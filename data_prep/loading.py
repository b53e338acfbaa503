"""Shared data loading for training (frame pairs) and reconstruction (whole videos).

Both datasets read the standard layout ``<root>/<split>/<video>/0000000.png ...`` and take the
video list from ``<root>/manifest.csv`` (status ``ok`` only). Frames come out as float32 in
[0, 1], channels first.

Determinism of :class:`FramePairDataset`: every random choice for item ``i`` comes from
``np.random.default_rng([seed, epoch, i])``, so a batch does not depend on the number of
DataLoader workers, and resuming at an epoch boundary (``set_epoch(e)``) replays epoch ``e``
exactly. DataLoader workers copy the dataset when an iterator is created, so call
``set_epoch`` before ``iter(loader)`` (and do not use ``persistent_workers=True``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset

from data_prep.manifest import (
    available_videos,
    check_frame_count,
    expected_frame_counts,
    parse_size,
    read_manifest,
)
from data_prep.video import VideoError, list_frames, read_frame, read_video


@dataclass(frozen=True)
class AugmentationConfig:
    """Training augmentation, in the reference configs' terms.

    Reference YAML shape (every group optional)::

        flip_param: {horizontal_flip: true, time_flip: true}
        resize_param: {ratio: [0.9, 1.1]}
        crop_param: {size: [256, 256]}
        jitter_param: {brightness: 0.1, contrast: 0.1, saturation: 0.1, hue: 0.1}

    Applied in the reference ``AllAugmentationTransform``'s order: flip, resize, crop, jitter.

    - Flips as the reference ``RandomFlip``: the time flip happens with probability 1/2, and
      only when it did not happen, the horizontal flip with probability 1/2 (so never both;
      with both enabled a horizontal flip has probability 1/4).
    - Resize (``RandomResize``): one factor drawn uniformly from ``ratio`` for the pair, each
      side scaled to ``int(side * factor)`` with scikit-image's ``resize`` called as the
      reference calls it (nearest neighbour, Gaussian anti-aliasing when shrinking, zero
      padding).
    - Crop (``RandomCrop``): frames smaller than ``size`` are first padded by repeating their
      edge (centred), then one window of ``size`` at a uniformly drawn offset is cut from both.
    - Jitter factors are drawn uniformly from ``[max(0, 1 - b), 1 + b]`` (brightness,
      contrast, saturation) and ``[-h, h]`` (hue) and applied in a random order, as in the
      reference ColorJitter.

    The default does nothing.
    """

    horizontal_flip: bool = False
    time_flip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    resize_ratio: tuple[float, float] | None = None
    crop_size: tuple[int, int] | None = None

    _FLIP_KEYS = ("horizontal_flip", "time_flip")
    _JITTER_KEYS = ("brightness", "contrast", "saturation", "hue")
    _GROUPS = ("flip_param", "resize_param", "crop_param", "jitter_param")

    @classmethod
    def from_dict(cls, params: dict | None) -> AugmentationConfig:
        """Build from the reference groups (``flip_param``, ``resize_param``, ``crop_param``,
        ``jitter_param``); every group optional."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(cls._GROUPS))
        if unknown:
            raise ValueError(f"unknown augmentation key(s) {unknown}; allowed {list(cls._GROUPS)}")
        values: dict[str, object] = {}
        groups = (
            ("flip_param", cls._FLIP_KEYS),
            ("resize_param", ("ratio",)),
            ("crop_param", ("size",)),
            ("jitter_param", cls._JITTER_KEYS),
        )
        for group, keys in groups:
            sub = params.get(group) or {}
            if not isinstance(sub, dict):
                raise ValueError(f"augmentation {group} must be a mapping, got {sub!r}")
            bad = sorted(set(sub) - set(keys))
            if bad:
                raise ValueError(f"unknown {group} key(s) {bad}; allowed {list(keys)}")
            if group == "resize_param" and "ratio" in sub:
                values["resize_ratio"] = _pair(sub["ratio"], "resize_param ratio", float)
            elif group == "crop_param" and "size" in sub:
                values["crop_size"] = _pair(sub["size"], "crop_param size", int)
            elif group in ("flip_param", "jitter_param"):
                values.update(sub)
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for name in self._FLIP_KEYS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"augmentation {name} must be true or false")
        for name in self._JITTER_KEYS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise ValueError(f"augmentation {name} must be a number >= 0, got {v!r}")
        if self.hue > 0.5:
            raise ValueError(f"augmentation hue must be <= 0.5, got {self.hue}")
        if self.resize_ratio is not None:
            low, high = self.resize_ratio
            if not 0 < low <= high:
                raise ValueError(f"augmentation resize_param ratio must be 0 < low <= high, got {self.resize_ratio}")
        if self.crop_size is not None and min(self.crop_size) < 1:
            raise ValueError(f"augmentation crop_param size must be positive, got {self.crop_size}")
        if self.resize_ratio is not None and self.crop_size is None:
            # a resized pair has another size than the model expects; the references always
            # crop it back (their mgif configs set both)
            raise ValueError("augmentation resize_param needs crop_param (the frame size to cut back to)")

    @property
    def jitter(self) -> bool:
        return any(getattr(self, k) > 0 for k in self._JITTER_KEYS)


def _pair(value: object, what: str, kind: type) -> tuple:
    """``[a, b]`` of numbers (ints for ``kind=int``) as a tuple, else a one-line error."""
    ok = isinstance(value, list | tuple) and len(value) == 2 and all(
        isinstance(v, int | float) and not isinstance(v, bool) and (kind is float or float(v).is_integer())
        for v in value
    )
    if not ok:
        raise ValueError(f"augmentation {what} must be two {'numbers' if kind is float else 'integers'}, got {value!r}")
    return tuple(kind(v) for v in value)


def _random_resize(frames: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale every frame's sides to ``int(side * factor)`` as the reference RandomResize does
    (scikit-image ``resize``: order 0, ``mode='constant'``, anti-aliasing, range preserved)."""
    from skimage.transform import resize  # only MGif's configs resize; keep the import off the rest

    height, width = frames.shape[-2:]
    size = (int(height * factor), int(width * factor))
    if size == (height, width):
        return frames
    images = frames.permute(0, 2, 3, 1).numpy()
    scaled = [
        resize(image, size, order=0, preserve_range=True, mode="constant", anti_aliasing=True)
        for image in images
    ]
    return torch.from_numpy(np.stack(scaled).astype(np.float32)).permute(0, 3, 1, 2)


def _random_crop(frames: torch.Tensor, size: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """Pad by edge repetition (centred) up to ``size``, then cut one window of ``size`` at a
    uniformly drawn offset, the same for every frame (the reference RandomCrop)."""
    h, w = size
    height, width = frames.shape[-2:]
    pad_h, pad_w = max(0, h - height), max(0, w - width)
    if pad_h or pad_w:
        # F.pad's order: (left, right, top, bottom); replicate = numpy's mode='edge'
        pads = (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2)
        frames = torch.nn.functional.pad(frames, pads, mode="replicate")
        height, width = frames.shape[-2:]
    y = int(rng.integers(0, height - h + 1))
    x = int(rng.integers(0, width - w + 1))
    return frames[..., y : y + h, x : x + w]


def _augment(
    frames: torch.Tensor, aug: AugmentationConfig, rng: np.random.Generator
) -> torch.Tensor:
    """Apply one random draw of ``aug`` identically to every frame of ``frames`` (T, 3, H, W)."""
    # Draw the flip and jitter decisions unconditionally so their stream layout does not
    # depend on the config.
    tflip, hflip = rng.random(2) < 0.5
    b, c, s = (
        rng.uniform(max(0.0, 1 - v), 1 + v) for v in (aug.brightness, aug.contrast, aug.saturation)
    )
    h = rng.uniform(-aug.hue, aug.hue)
    order = rng.permutation(4)
    if aug.time_flip and tflip:
        frames = frames.flip(0)
    elif aug.horizontal_flip and hflip:
        frames = frames.flip(-1)
    if aug.resize_ratio is not None:
        frames = _random_resize(frames, float(rng.uniform(*aug.resize_ratio)))
    if aug.crop_size is not None:
        frames = _random_crop(frames, aug.crop_size, rng)
    if aug.jitter:
        ops = (
            (aug.brightness, lambda x: TF.adjust_brightness(x, float(b))),
            (aug.contrast, lambda x: TF.adjust_contrast(x, float(c))),
            (aug.saturation, lambda x: TF.adjust_saturation(x, float(s))),
            (aug.hue, lambda x: TF.adjust_hue(x, float(h))),
        )
        for k in order:
            strength, op = ops[k]
            if strength > 0:
                frames = op(frames)
        frames = frames.clamp(0.0, 1.0)
    return frames


def _to_tensor(frame: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(frame).permute(2, 0, 1).float().div_(255.0)


def _resolve_size(root: Path, split: str, frame_size: tuple[int, int] | None) -> tuple[int, int]:
    """The split's frame size from the manifest, checked against ``frame_size`` if given."""
    df = read_manifest(root)
    sizes = set(df[(df["split"] == split) & (df["status"] == "ok")]["size"]) - {""}
    if len(sizes) > 1:
        raise VideoError(
            f"dataset at {root} mixes frame sizes {sorted(sizes)} in its {split} split"
        )
    listed = parse_size(sizes.pop()) if sizes else None
    if frame_size is None:
        if listed is None:
            raise VideoError(f"dataset at {root}: manifest gives no size; pass frame_size")
        return listed
    frame_size = (int(frame_size[0]), int(frame_size[1]))
    if listed is not None and listed != frame_size:
        raise VideoError(
            f"dataset at {root} has {split} frames of {listed[0]}x{listed[1]} (HxW), "
            f"but frame_size={frame_size} was requested"
        )
    return frame_size


def _list_checked(root: Path, split: str, videos: list[str]) -> list[list[Path]]:
    """Frame files of every video, checked against the manifest's frame counts."""
    expected = expected_frame_counts(root, split)
    listed = []
    for video in videos:
        frames = list_frames(root / split / video)
        check_frame_count(root, split, video, len(frames), expected[video])
        listed.append(frames)
    return listed


def video_identity(name: str) -> str:
    """The identity a video belongs to, read as the references read it: the part of its name
    before the first ``#`` (``id10001#7w0IBEWc9Qw#000993#001143`` -> ``id10001``); a name
    without ``#`` is its own identity."""
    return name.split("#", 1)[0]


class FramePairDataset(Dataset):
    """Random (source, driving) frame pairs from the videos of one split.

    Without ``id_sampling``, ``len`` is ``num_videos * num_repeats`` (the reference
    DatasetRepeater) and item ``i`` uses video ``i % num_videos``. With ``id_sampling`` (the
    references' vox, taichi and ted configs), ``len`` is ``num_identities * num_repeats``: item
    ``i`` takes identity ``i % num_identities`` (:func:`video_identity`) and then one of its
    videos uniformly at random, so an epoch and the learning-rate milestones count identities,
    and every identity is drawn equally often however many videos it has. Only the two chosen
    PNG files are decoded.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        frame_size: tuple[int, int] | None = None,
        augmentation: AugmentationConfig | dict | None = None,
        num_repeats: int = 1,
        seed: int = 0,
        id_sampling: bool = False,
    ) -> None:
        self.root = Path(root)
        self.split = split
        if not isinstance(id_sampling, bool):
            raise ValueError(f"id_sampling must be true or false, got {id_sampling!r}")
        self.id_sampling = id_sampling
        if num_repeats < 1:
            raise ValueError(f"num_repeats must be >= 1, got {num_repeats}")
        if isinstance(augmentation, dict):
            augmentation = AugmentationConfig.from_dict(augmentation)
        self.augmentation = augmentation or AugmentationConfig()
        self.augmentation.validate()
        self.num_repeats = int(num_repeats)
        self.seed = int(seed)
        self.epoch = 0
        self.videos = available_videos(self.root, split)
        self.frame_size = _resolve_size(self.root, split, frame_size)
        # Listing once here keeps __getitem__ to two file reads.
        self.frames = _list_checked(self.root, split, self.videos)
        by_identity: dict[str, list[int]] = {}
        for v, name in enumerate(self.videos):
            by_identity.setdefault(video_identity(name), []).append(v)
        #: identities in sorted order, and the indices (into ``videos``) of each one's videos
        self.identities = sorted(by_identity)
        self.videos_of = [by_identity[i] for i in self.identities]

    def num_frames(self, video_index: int) -> int:
        """Number of frames of video ``video_index`` (an index into ``videos``)."""
        return len(self.frames[video_index])

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of ``epoch`` (call before creating the DataLoader iterator)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        units = len(self.identities) if self.id_sampling else len(self.videos)
        return units * self.num_repeats

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.id_sampling:
            videos = self.videos_of[index % len(self.identities)]
            v = videos[rng.integers(len(videos))]
        else:
            v = index % len(self.videos)
        files = self.frames[v]
        # The reference draws with replacement, so source == driving happens (identity pairs).
        picks = np.sort(rng.choice(len(files), replace=True, size=2))
        pair = torch.stack([_to_tensor(read_frame(files[k], self.frame_size)) for k in picks])
        pair = _augment(pair, self.augmentation, rng)
        return {"source": pair[0], "driving": pair[1], "video": self.videos[v]}


class VideoDataset(Dataset):
    """Whole videos of one split in frame order, sorted by name (one video per item)."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "test",
        frame_size: tuple[int, int] | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.videos = available_videos(self.root, split)
        self.frame_size = _resolve_size(self.root, split, frame_size)
        # Cheap: fails at construction on missing or empty folders and on lost frames.
        self.frames = _list_checked(self.root, split, self.videos)

    def num_frames(self, index: int) -> int:
        """Number of frames of video ``index`` without decoding it."""
        return len(self.frames[index])

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict:
        name = self.videos[index]
        frames = read_video(self.root / self.split / name, self.frame_size)
        tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)
        return {"video": name, "frames": tensor}


__all__ = [
    "AugmentationConfig",
    "FramePairDataset",
    "VideoDataset",
    "VideoError",
    "video_identity",
]
