"""How much faster is batched evaluation than the reference's one-frame-at-a-time loop?

Run: ``python tests/benchmarks/bench_metrics.py [--reps 5] [--batch-size 64] [--threads 2]``
from the repo root. It generates a synthetic dataset in a temporary folder, trains its
evaluators for a couple of steps (speed does not depend on accuracy; the architecture is the
real one), writes the no-motion reconstruction and then times the whole evaluation pass,
always with an empty ground-truth cache, four ways, interleaved in the same process:

- ``batched``: :func:`metrics.evaluate.measure` as the DAG runs it: frames read once per video
  (libpng through OpenCV), ground truth and generated frames through each evaluator in shared
  batches, AKD/MKR, AED and L1;
- ``reference``: the pose-evaluation code the papers used, with our backends (its own no longer
  run): its ``extract.py`` runs four times (keypoints and identity, ground truth and generated),
  each pass reading its side of every video with imageio as its ``frames2array`` does (one
  ``imread`` per frame file, one per stacked PNG, the frame width given as ``--image_shape``)
  and giving the network one frame at a time; then the comparison (``cmp*.py``) computes AKD/MKR
  and AED. No L1: the reference computed it while reconstructing, from frames in memory;
- ``reference, our reader``: the same loop reading with :mod:`data_prep.video`: how much of
  the gain is batching and reading once, without the faster decoder;
- ``one frame``: ``measure`` with ``batch_size=1``: the share of the gain batching alone buys.

It prints frames/s of each and the median ratio of ``batched`` to each of the others with its
spread (min-max over repetitions). The issue's target (>= 4x on CPU) is against ``reference``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from data_prep.manifest import MANIFEST_NAME, available_videos, parse_size, read_manifest  # noqa: E402
from data_prep.synthetic import generate  # noqa: E402
from data_prep.video import read_stacked_png, read_video  # noqa: E402
from metrics.baseline import no_motion_reconstruction  # noqa: E402
from metrics.evaluate import measure  # noqa: E402
from metrics.identity import aed  # noqa: E402
from metrics.keypoints import keypoint_metrics  # noqa: E402
from metrics.protocols import build_backends, get_protocol  # noqa: E402
from metrics.train_evaluators import override, train_evaluators  # noqa: E402

READERS = {"reference": "imageio", "reference, our reader": "ours"}
DATASET = {"train_videos": 4, "test_videos": 12, "num_identities": 4, "num_test_identities": 2}


def timed_pass(recon: Path, dataset: Path, protocol, backends, cache: Path, batch_size: int, prefetch: bool) -> tuple[float, int, dict[str, np.ndarray]]:
    start = time.perf_counter()
    evaluation = measure(recon, dataset, protocol, *backends, gt_cache_dir=cache, batch_size=batch_size, progress=False, prefetch=prefetch)
    elapsed = time.perf_counter() - start
    assert evaluation.record["gt_cache"]["keypoints"]["misses"] > 0  # ground truth measured too
    return elapsed, len(evaluation.table), {name: evaluation.table[name].to_numpy(float) for name in ("akd", "aed", "l1")}


def _imageio_video(folder: Path) -> np.ndarray:
    """A frame folder as the reference's ``frames2array`` reads it: one imageio ``imread`` per file."""
    return np.array([imageio.imread(folder / name) for name in sorted(os.listdir(folder))])


def _imageio_stacked(path: Path, width: int) -> np.ndarray:
    """A horizontally stacked PNG as ``frames2array`` reads it: one ``imread``, split by width."""
    image = imageio.imread(path)[..., :3]
    h = image.shape[0]
    return image.reshape(h, -1, width, 3).transpose(1, 0, 2, 3)


def reference_loop(recon: Path, dataset: Path, protocol, backends, reader: str) -> tuple[float, int, dict[str, np.ndarray]]:
    """The pose-evaluation structure: per evaluator and side a reading pass, one frame per call.

    Each pass reads only its own side: the frame width of the stacked PNGs comes from the
    manifest, as the reference takes it from its ``--image_shape`` argument. ``reader`` is
    ``imageio`` (the reference's) or ``ours`` (:mod:`data_prep.video`).
    """
    manifest = read_manifest(dataset / MANIFEST_NAME).set_index("video")
    start = time.perf_counter()
    videos = available_videos(dataset, "test")

    def frames(video: str, side: str) -> np.ndarray:
        if side == "truth":
            folder = dataset / "test" / video
            return _imageio_video(folder) if reader == "imageio" else read_video(folder)
        width = parse_size(manifest.loc[video, "size"])[1]
        if reader == "imageio":
            return _imageio_stacked(recon / f"{video}.png", width)
        return read_stacked_png(recon / f"{video}.png", frame_width=width)

    def extract(fn, side: str) -> dict[str, np.ndarray]:
        return {v: np.concatenate([fn(f[None]) for f in frames(v, side)]) for v in videos}

    keypoint, identity = backends
    kp = {side: extract(keypoint.detect, side) for side in ("truth", "generated")}
    emb = {side: extract(identity.embed, side) for side in ("truth", "generated")}
    columns: dict[str, list[np.ndarray]] = {"akd": [], "aed": []}
    for v in videos:
        columns["akd"].append(keypoint_metrics(kp["truth"][v], kp["generated"][v], protocol.keypoints["mode"])["akd"])
        columns["aed"].append(aed(emb["truth"][v], emb["generated"][v])["aed"])
    table = {name: np.concatenate(values) for name, values in columns.items()}
    return time.perf_counter() - start, len(table["akd"]), table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = generate(DATASET, root / "synthetic")
        tiny = {"keypoint": {"steps": 2, "batch_size": 2}, "identity": {"steps": 2, "batch_size": 2}}
        settings = override(get_protocol("synthetic").trained_evaluators, tiny)
        train_evaluators(dataset, root / "evaluators", settings, progress=False)
        no_motion_reconstruction(dataset, root / "recon", progress=False)
        protocol = get_protocol("synthetic")
        backends = build_backends(protocol, args.device, root, root / "evaluators")
        prefetch = torch.device(args.device).type != "cpu"  # as evaluate_reconstructions decides
        recon = root / "recon"
        # Warm-up, and a check that both reference loops compute what the pass computes (batch
        # sizes change convolution rounding only).
        _, _, ours = timed_pass(recon, dataset, protocol, backends, root / "warmup", args.batch_size, prefetch)
        for reader in READERS.values():
            _, _, theirs = reference_loop(recon, dataset, protocol, backends, reader)
            for name in theirs:
                np.testing.assert_allclose(theirs[name], ours[name], rtol=1e-3, atol=1e-3, err_msg=f"{reader}: {name}")
        rates: dict[str, list[float]] = {"batched": [], **{name: [] for name in READERS}, "one frame": []}
        for rep in range(args.reps):
            for name in rates:
                if name in READERS:
                    seconds, frames, _ = reference_loop(recon, dataset, protocol, backends, READERS[name])
                else:
                    batch = args.batch_size if name == "batched" else 1
                    cache = root / f"cache-{name.replace(' ', '-')}-{rep}"
                    seconds, frames, _ = timed_pass(recon, dataset, protocol, backends, cache, batch, prefetch)
                rates[name].append(frames / seconds)
    print(f"frames per pass: {frames} (ground truth and generated each through both evaluators), threads {args.threads}")
    for name, values in rates.items():
        print(f"{name:22s} median {statistics.median(values):8.1f} frames/s  (min {min(values):.1f}, max {max(values):.1f})")
    for other in rates:
        if other == "batched":
            continue
        ratios = [b / o for b, o in zip(rates["batched"], rates[other], strict=True)]
        print(f"batched (batch {args.batch_size}) / {other}: median {statistics.median(ratios):.2f}x "
              f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x over {args.reps} interleaved repetitions)")


if __name__ == "__main__":
    main()
