"""Video reconstruction, the protocol every paper's Table 1 uses.

For each test video: source = frame 0, every frame (frame 0 included) is a driving frame, the
source motion descriptor is computed once. The output is one PNG per video with the predicted
frames stacked horizontally, uint8 by truncation of 255·x. Videos already written by an
interrupted run of the same checkpoint are kept, so a rerun resumes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from data_prep.io import atomic_path, file_sha256, write_text
from data_prep.loading import VideoDataset
from data_prep.video import to_uint8, write_stacked_png
from methods.base import AnimationModel, expand_features

INDEX_NAME = "index.csv"
#: Driving pixels per call (frames x height x width) when the batch size is chosen for the frame
#: size. Measured (docs/speed.md, tests/benchmarks/bench_reconstruct.py, 2 CPU cores): at 64x64
#: 16 frames per call were fastest, at 256x256 one frame per call (batches of 2-16 were up to 10 %
#: slower: their activations no longer fit the caches). On a GPU larger batches pay; its budget
#: (16 frames of 256x256) is the reference configs' scale, not yet measured here.
PIXELS_PER_CALL = {"cpu": 16 * 64 * 64, "cuda": 16 * 256 * 256}
#: Memory layout of the model's weights and the frames during reconstruction. Measured
#: (docs/speed.md, ``bench_reconstruct.py --layout``, 2 CPU cores): channels-last spares
#: oneDNN's convolutions their layout conversions, FOMM 1.15-1.25x faster at 64x64 and 256x256,
#: MRAA and TPSMM up to 1.2x at 64x64, CPAB within noise; outputs equal to 2e-4. Not measured on
#: a GPU, so CUDA keeps the contiguous layout the reference code runs in.
MEMORY_FORMAT = {"cpu": torch.channels_last, "cuda": torch.contiguous_format}
#: The checkpoint the reconstructions came from: file, SHA-256, release name, where it was checked.
SOURCE_NAME = "checkpoint.json"


def _measured_on(device: torch.device | str) -> str:
    """The key of :data:`PIXELS_PER_CALL` and :data:`MEMORY_FORMAT` for ``device``."""
    return "cuda" if torch.device(device).type == "cuda" else "cpu"


def frames_per_call(frame_size: tuple[int, int], device: torch.device | str) -> int:
    """Driving frames per call for frames of ``frame_size`` on ``device`` (:data:`PIXELS_PER_CALL`);
    it also bounds the memory of a long video's reconstruction."""
    return max(1, PIXELS_PER_CALL[_measured_on(device)] // (frame_size[0] * frame_size[1]))


def memory_format(device: torch.device | str) -> torch.memory_format:
    """The layout reconstruction runs in on ``device`` (:data:`MEMORY_FORMAT`)."""
    return MEMORY_FORMAT[_measured_on(device)]


@torch.no_grad()
def reconstruct_video(model: AnimationModel, frames: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Reconstruct one video (T, 3, H, W) in [0, 1] from its first frame; returns (T, 3, H, W)."""
    source = frames[:1]
    # Everything that depends on the source alone is computed once per video.
    motion_source = model.encode(source)
    features = model.encode_source(source)
    predictions = []
    for start in range(0, frames.shape[0], batch_size):
        driving = frames[start : start + batch_size]
        n = driving.shape[0]
        repeated = {k: v.expand(n, *v.shape[1:]) for k, v in motion_source.items()}
        out = model.generate(
            source.expand(n, -1, -1, -1), repeated, model.encode(driving), expand_features(features, n)
        )
        predictions.append(out["prediction"].clamp(0, 1))
    return torch.cat(predictions)


def reconstruct_dataset(
    model: AnimationModel,
    checkpoint: Path,
    dataset_root: Path,
    out_dir: Path,
    frame_size: tuple[int, int],
    batch_size: int | None = None,
    progress: bool = True,
    device: torch.device | str | None = None,
    checkpoint_sha256: str | None = None,
    source: dict[str, Any] | None = None,
) -> Path:
    """Reconstruct every available test video into ``out_dir``; return the index CSV path.

    The index lists video, frames and file of every reconstruction; it is written last, so its
    presence means the directory is complete. Frames go to ``device`` (default: where the
    model's weights are); the model is put in eval mode and, with the frames, in the device's
    memory layout (:func:`memory_format`). ``source`` (the checkpoint's file, digest, release) is written to
    ``checkpoint.json`` beside the index: the reports show the digest beside the numbers.
    """
    if device is None:
        device = next(model.parameters()).device
    batch_size = batch_size or frames_per_call(frame_size, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    marker = out_dir / ".checkpoint"
    digest = checkpoint_sha256 or file_sha256(checkpoint)
    checkpoint_id = digest[:16]
    if not marker.exists() or marker.read_text() != checkpoint_id:
        # Reconstructions of another checkpoint must not survive into this one.
        for stale in out_dir.glob("*.png"):
            stale.unlink()
        write_text(marker, checkpoint_id)
    layout = memory_format(device)
    model.eval().to(memory_format=layout)
    dataset = VideoDataset(dataset_root, split="test", frame_size=frame_size)
    rows = []
    for index in tqdm(range(len(dataset)), desc="reconstruct", disable=not progress):
        name = dataset.videos[index]
        path = out_dir / f"{name}.png"
        if path.exists():
            rows.append({"video": name, "frames": dataset.num_frames(index), "file": path.name})
            continue
        item = dataset[index]
        prediction = reconstruct_video(model, item["frames"].to(device, memory_format=layout), batch_size=batch_size)
        write_stacked_png(path, to_uint8(prediction.permute(0, 2, 3, 1).cpu().numpy()))
        rows.append({"video": name, "frames": int(prediction.shape[0]), "file": path.name})
    record = {"file": str(checkpoint), "sha256": digest, **(source or {})}
    write_text(out_dir / SOURCE_NAME, json.dumps(record, indent=1, sort_keys=True) + "\n")
    index_path = out_dir / INDEX_NAME
    with atomic_path(index_path) as tmp:
        pd.DataFrame(rows, columns=["video", "frames", "file"]).to_csv(tmp, index=False)
    return index_path
