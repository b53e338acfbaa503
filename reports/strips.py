"""Picture strips for the reports: reconstructed frames beside the ground truth."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

from data_prep.video import read_stacked_png, read_video


def pick_frames(num_frames: int, count: int) -> list[int]:
    return sorted({int(round(i)) for i in np.linspace(0, num_frames - 1, min(count, num_frames))})


def strip(frames: np.ndarray, indices: list[int], scale: int = 2) -> np.ndarray:
    """Frames (T, H, W, 3) at ``indices`` side by side, enlarged ``scale``× (nearest)."""
    row = np.concatenate([frames[i] for i in indices], axis=1)
    return row.repeat(scale, axis=0).repeat(scale, axis=1)


def png_data_uri(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def comparison_strips(
    video_dir: Path, reconstructions: dict[str, Path], count: int = 6
) -> tuple[str, dict[str, str], list[int]]:
    """Data URIs of the ground-truth strip and of each run's strip for one test video."""
    truth = read_video(video_dir)
    indices = pick_frames(truth.shape[0], count)
    scale = max(1, 128 // truth.shape[1])
    runs = {
        run: png_data_uri(strip(read_stacked_png(path, frame_width=truth.shape[2]), indices, scale))
        for run, path in reconstructions.items()
        if path.exists()
    }
    return png_data_uri(strip(truth, indices, scale)), runs, indices
