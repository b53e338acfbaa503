"""Measure a reconstruction directory against the ground truth: one row per frame.

For every available test video: L1 on the frames; AKD/MKR from the protocol's keypoint backend
and AED from its identity backend, the ground-truth side read from the cache
(:mod:`metrics.gt_cache`) and the generated side measured in batches. ``metrics.csv`` gets one
row per frame (``video, frame, l1, akd, akd_skip, mkr_missing, mkr_present, mkr, mkr_skip, aed,
aed_skip``, the columns the protocol measures); ``metrics.json`` beside it records the protocol,
each evaluator's backend / package / version / weights checksum (and validation figures where
the evaluator was trained here) and how many frames were skipped, and why.

Bad input stops with an error naming the file: a video without a reconstruction, a stacked PNG
whose width is not a multiple of the frame width, a frame-count or size mismatch, an evaluator
that finds nothing in any ground-truth frame (wrong weights or wrong protocol). Frames a metric
cannot be computed on (no joint in both frames, no face in the generated frame) are NaN with the
reason in ``<metric>_skip`` and counted in ``metrics.json`` and the report.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from data_prep.io import atomic_path, write_text
from data_prep.manifest import available_videos
from data_prep.video import read_stacked_png, read_video
from metrics.aggregate import METRICS, skipped_frames
from metrics.gt_cache import GroundTruthCache
from metrics.identity import aed
from metrics.keypoints import keypoint_metrics
from metrics.l1 import l1_per_frame
from metrics.protocols import Protocol, build_backends, get_protocol
from metrics.uncertainty import intervals


@dataclass
class Evaluation:
    table: pd.DataFrame
    #: protocol, evaluators (backend info + validation), skip counts, cache use
    record: dict[str, Any] = field(default_factory=dict)


def batched(
    fn: Callable[[np.ndarray], np.ndarray], frames: np.ndarray, batch_size: int
) -> np.ndarray:
    """``fn`` over ``frames`` in chunks of ``batch_size`` (1 = the reference's frame-by-frame loop)."""
    return np.concatenate(
        [fn(frames[s : s + batch_size]) for s in range(0, len(frames), batch_size)]
    )


def _backend_record(backend: Any, kind: str, extra: dict[str, Any]) -> dict[str, Any]:
    record = {**asdict(backend.info), **extra}
    validation = getattr(backend, "validation", None)
    if validation:
        record["validation"] = validation
    return record


def _read_pair(
    dataset_root: Path, reconstruction_dir: Path, video: str
) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth frames and the reconstruction of ``video``, checked to match."""
    truth = read_video(dataset_root / "test" / video)
    path = reconstruction_dir / f"{video}.png"
    if not path.exists():
        raise FileNotFoundError(f"no reconstruction {path} for test video {video}")
    prediction = read_stacked_png(path, frame_width=truth.shape[2])
    if prediction.shape != truth.shape:
        raise ValueError(
            f"{path}: {prediction.shape[0]} frames of {prediction.shape[1:]} but the video has "
            f"{truth.shape[0]} of {truth.shape[1:]}"
        )
    return truth, prediction


def _truth_and_generated(
    cache: GroundTruthCache,
    video: str,
    truth: np.ndarray,
    prediction: np.ndarray,
    fn: Callable[[np.ndarray], np.ndarray],
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``fn`` of the ground truth (cached) and of the generated frames. On a cache miss both
    go through the evaluator in shared batches: one video's frames rarely fill a batch."""
    generated: list[np.ndarray] = []

    def compute(frames: np.ndarray) -> np.ndarray:
        out = batched(fn, np.concatenate([frames, prediction]), batch_size)
        generated.append(out[len(frames) :])
        return out[: len(frames)]

    gt = cache.get(video, truth, compute)
    return gt, generated[0] if generated else batched(fn, prediction, batch_size)


def measure(
    reconstruction_dir: Path,
    dataset_root: Path,
    protocol: Protocol,
    keypoint_backend: Any = None,
    identity_backend: Any = None,
    gt_cache_dir: Path | None = None,
    batch_size: int = 32,
    progress: bool = True,
    prefetch: bool = False,
) -> Evaluation:
    """Per-frame metrics of every available test video with the given (built) backends.

    ``prefetch`` decodes the next video's PNGs in a thread while the evaluators run on this
    one: right when they run on a GPU. On a CPU their threads already use every core, and a
    decoder beside them slowed the pass (tests/benchmarks/bench_metrics.py), so frames are read
    in turn.
    """
    videos = available_videos(dataset_root, "test")
    caches = {}
    for kind, backend in (("keypoints", keypoint_backend), ("identity", identity_backend)):
        if backend is not None:
            root = gt_cache_dir if gt_cache_dir is not None else reconstruction_dir / ".gt_cache"
            caches[kind] = GroundTruthCache(root, kind, backend.info)
    mode = protocol.keypoints["mode"] if protocol.keypoints else None
    # Columns gathered as arrays and framed once: a DataFrame per video cost as much as L1.
    parts: dict[str, list[np.ndarray]] = {}
    gt_found = {"keypoints": False, "identity": False}
    bar = tqdm(
        total=len(videos), desc=f"evaluate ({protocol.name})", unit="video", disable=not progress
    )
    with ThreadPoolExecutor(max_workers=1) as reader:

        def read(video: str) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
            if prefetch:  # decode in the background while the evaluators work
                return reader.submit(_read_pair, dataset_root, reconstruction_dir, video).result
            return partial(_read_pair, dataset_root, reconstruction_dir, video)

        pending = read(videos[0]) if videos else None
        for i, video in enumerate(videos):
            truth, prediction = pending()
            if i + 1 < len(videos):
                pending = read(videos[i + 1])
            n = truth.shape[0]
            columns = {"video": np.full(n, video, dtype=object), "frame": np.arange(n)}
            columns["l1"] = l1_per_frame(prediction, truth)
            if keypoint_backend is not None:
                gt_kp, kp = _truth_and_generated(
                    caches["keypoints"],
                    video,
                    truth,
                    prediction,
                    keypoint_backend.detect,
                    batch_size,
                )
                gt_found["keypoints"] |= bool(np.isfinite(gt_kp).all(-1).any())
                for column, values in keypoint_metrics(gt_kp, kp, mode).items():
                    if column.split("_")[0] in protocol.metrics:
                        columns[column] = values
            if identity_backend is not None:
                gt_id, emb = _truth_and_generated(
                    caches["identity"], video, truth, prediction, identity_backend.embed, batch_size
                )
                gt_found["identity"] |= bool(np.isfinite(gt_id).all(-1).any())
                columns.update(aed(gt_id, emb))
            for column, values in columns.items():
                parts.setdefault(column, []).append(values)
            bar.update()
    bar.close()
    for kind, backend in (("keypoints", keypoint_backend), ("identity", identity_backend)):
        if backend is not None and not gt_found[kind]:
            raise ValueError(
                f"{kind} backend {backend.info.name} found nothing in any ground-truth test frame of "
                f"{dataset_root}: wrong weights or wrong protocol ({protocol.name!r}) for this dataset?"
            )
    table = pd.DataFrame({column: np.concatenate(values) for column, values in parts.items()})
    record: dict[str, Any] = {
        "protocol": protocol.name,
        "metrics": list(protocol.metrics),
        "frames": len(table),
        "videos": len(videos),
        "evaluators": {},
        "skipped": skipped_frames(table),
        "gt_cache": {
            kind: {"dir": str(c.dir), "hits": c.hits, "misses": c.misses}
            for kind, c in caches.items()
        },
    }
    if keypoint_backend is not None:
        record["evaluators"]["keypoints"] = _backend_record(
            keypoint_backend, "keypoints", {"mode": mode}
        )
    if identity_backend is not None:
        record["evaluators"]["identity"] = _backend_record(identity_backend, "identity", {})
    return Evaluation(table, record)


def evaluate_reconstructions(
    reconstruction_dir: Path,
    dataset_root: Path,
    protocol: str,
    progress: bool = True,
    *,
    device: str = "cpu",
    weights_dir: Path = Path("resources/weights"),
    evaluators_dir: Path | None = None,
    gt_cache_dir: Path | None = None,
    batch_size: int = 32,
) -> Evaluation:
    """Build the protocol's backends and :func:`measure` the reconstruction folder."""
    proto = get_protocol(protocol)
    keypoint, identity = build_backends(proto, device, Path(weights_dir), evaluators_dir)
    return measure(
        Path(reconstruction_dir),
        Path(dataset_root),
        proto,
        keypoint,
        identity,
        gt_cache_dir,
        batch_size,
        progress,
        prefetch=torch.device(device).type != "cpu",
    )


def write_metrics(evaluation: Evaluation | pd.DataFrame, path: Path) -> None:
    """``metrics.csv`` (and ``metrics.json`` beside it when there is a record), atomically."""
    table = evaluation.table if isinstance(evaluation, Evaluation) else evaluation
    if isinstance(evaluation, Evaluation):
        # Each metric's frame-weighted mean with its 95 % interval over the test videos.
        found = intervals(table, list(METRICS))
        record = {**evaluation.record, "intervals": {m: i.as_dict() for m, i in found.items()}}
        write_text(Path(path).with_suffix(".json"), json.dumps(record, indent=2, sort_keys=True))
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
