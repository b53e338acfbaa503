"""Measure a reconstruction directory against the ground truth: one row per frame."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm import tqdm

from data_prep.io import atomic_path
from data_prep.manifest import available_videos
from data_prep.video import read_stacked_png, read_video
from metrics.registry import get_protocol


def evaluate_reconstructions(
    reconstruction_dir: Path, dataset_root: Path, protocol: str, progress: bool = True
) -> pd.DataFrame:
    """Per-frame metrics of every test video; columns ``video, frame`` + the protocol's metrics.

    Every available test video must have a reconstruction with as many frames as the video:
    a missing or short one is an error, not a silently smaller average.
    """
    proto = get_protocol(protocol)
    frames = []
    for video in tqdm(available_videos(dataset_root, "test"), desc="evaluate", disable=not progress):
        truth = read_video(dataset_root / "test" / video)
        path = reconstruction_dir / f"{video}.png"
        if not path.exists():
            raise FileNotFoundError(f"no reconstruction {path} for test video {video}")
        prediction = read_stacked_png(path, frame_width=truth.shape[2])
        if prediction.shape != truth.shape:
            raise ValueError(f"{path}: {prediction.shape[0]} frames of {prediction.shape[1:]} but the video has {truth.shape[0]} of {truth.shape[1:]}")
        table = pd.DataFrame({"video": video, "frame": range(truth.shape[0])})
        for metric in proto.metrics.values():
            for column, values in metric(prediction, truth).items():
                table[column] = values
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def write_metrics(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
