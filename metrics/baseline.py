"""The no-motion baseline: the source frame (frame 0) copied to every driving frame.

It is written exactly like a method's reconstruction (one stacked PNG per test video plus
``index.csv``, written last) under ``results/{dataset}/no-motion/reconstruction/`` and measured
by the same evaluation, so every table has a row that says what a number means: a method must
beat "nothing moves" to have animated anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from data_prep.io import atomic_path
from data_prep.manifest import available_videos
from data_prep.video import read_video, write_stacked_png

RUN_NAME = "no-motion"
INDEX_NAME = "index.csv"


def no_motion_reconstruction(dataset_root: Path, out_dir: Path, progress: bool = True) -> Path:
    """Write the baseline for every available test video; returns the index CSV path."""
    rows = []
    for video in tqdm(available_videos(dataset_root, "test"), desc="no-motion baseline", disable=not progress):
        frames = read_video(dataset_root / "test" / video)
        still = np.broadcast_to(frames[:1], frames.shape)
        write_stacked_png(out_dir / f"{video}.png", still)
        rows.append({"video": video, "frames": len(frames), "file": f"{video}.png"})
    index = out_dir / INDEX_NAME
    with atomic_path(index) as tmp:
        pd.DataFrame(rows, columns=["video", "frames", "file"]).to_csv(tmp, index=False)
    return index
