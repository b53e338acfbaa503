"""How much faster is batched evaluation than the reference's one-frame-at-a-time loop?

Run: ``python tests/benchmarks/bench_metrics.py [--reps 5] [--batch-size 64] [--threads 2]``
from the repo root. It generates a synthetic dataset in a temporary folder, trains its
evaluators for a couple of steps (speed does not depend on accuracy; the architecture is the
real one), writes the no-motion reconstruction and then times the whole evaluation pass (read
PNGs, L1, keypoints of ground truth and generated frames, AKD/MKR, embeddings, AED) with frames
given to the evaluators in batches and one at a time, with an empty ground-truth cache each
time, alternating the two in the same process. It prints frames/s of each, the median ratio and
its spread (min-max over repetitions).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from data_prep.synthetic import generate  # noqa: E402
from metrics.baseline import no_motion_reconstruction  # noqa: E402
from metrics.evaluate import measure  # noqa: E402
from metrics.registry import build_backends, get_protocol  # noqa: E402
from metrics.train_evaluators import override, train_evaluators  # noqa: E402

DATASET = {"train_videos": 4, "test_videos": 12, "num_identities": 4, "num_test_identities": 2}


def timed_pass(recon: Path, dataset: Path, protocol, backends, cache: Path, batch_size: int) -> tuple[float, int]:
    start = time.perf_counter()
    evaluation = measure(recon, dataset, protocol, *backends, gt_cache_dir=cache, batch_size=batch_size, progress=False)
    elapsed = time.perf_counter() - start
    assert evaluation.record["gt_cache"]["keypoints"]["misses"] > 0  # ground truth measured too
    return elapsed, len(evaluation.table)


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
        timed_pass(root / "recon", dataset, protocol, backends, root / "warmup", args.batch_size)  # warm-up
        rates: dict[str, list[float]] = {"batched": [], "one frame": []}
        for rep in range(args.reps):
            for name, batch in (("batched", args.batch_size), ("one frame", 1)):
                seconds, frames = timed_pass(root / "recon", dataset, protocol, backends, root / f"cache-{name}-{rep}", batch)
                rates[name].append(frames / seconds)
        ratios = [b / o for b, o in zip(rates["batched"], rates["one frame"], strict=True)]
    print(f"frames per pass: {frames} (ground truth and generated each through both evaluators), threads {args.threads}")
    for name, values in rates.items():
        print(f"{name:10s} median {statistics.median(values):8.1f} frames/s  (min {min(values):.1f}, max {max(values):.1f})")
    print(f"batched / one frame at a time (batch {args.batch_size}): median {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x over {args.reps} interleaved repetitions)")


if __name__ == "__main__":
    main()
