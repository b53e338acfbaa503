"""How much faster are the papers' evaluators batched than pose-evaluation's frame-by-frame loop?

Run: ``python tests/benchmarks/bench_paper_evaluators.py [--reps 3] [--frames 2] [--batch-size 2]
[--size 256] [--threads 1]`` from the repo root. Random uint8 frames of ``--size`` x ``--size``;
random weights (speed does not depend on them; no weights file needed). Timed interleaved in
one process, after a warm-up that also checks both give the same keypoints:

- rtpose ``batched``: :class:`metrics.backends.rtpose_body.RtposeBody` ``detect``: ``--batch-size``
  frames and their mirror images per network call, then the peaks per frame;
- rtpose ``one frame``: the structure of pose-evaluation's ``extract_body_pose``: per frame, the
  frame and then its mirror image through the network one at a time, the maps averaged, then the
  whole ``decode_pose`` (peaks, limbs, people; extract.py keeps only the peaks).

Random weights give heatmaps under the peak threshold, so decoding costs ~nothing in either;
with the released weights the reference's limb and people steps add a little to ``one frame``.

- reid_baseline / openface ``batched``: ``embed`` of all frames (their default batch sizes);
  ``one frame``: ``embed`` one frame per call, extract_body_id's / extract_face_id's loop.

It prints frames/s of each and the median ratio with its spread over repetitions.
``--only rtpose`` (or reid_baseline, openface) times one evaluator.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from metrics.backends import paf_decoder  # noqa: E402
from metrics.backends import rtpose_body as rb  # noqa: E402


@torch.no_grad()
def rtpose_one_frame(backend: rb.RtposeBody, frames: np.ndarray) -> np.ndarray:
    """extract_body_pose's loop with our pieces: one image per network call, full decode."""
    out = np.full((len(frames), rb.NUM_JOINTS, 2), np.nan)
    for i, frame in enumerate(frames[..., ::-1]):
        maps = []
        for image in (frame, frame[:, ::-1]):
            x, resized = rb.network_input(image, backend.input_height)
            pafs, heatmaps = backend.net(torch.from_numpy(x)[None].to(backend.device))
            maps.append(
                [
                    rb.maps_to_frame(
                        m[0].cpu().numpy().transpose(1, 2, 0), resized, frame.shape[:2]
                    )
                    for m in (heatmaps, pafs)
                ]
            )
        (heat, paf), (mirror_heat, mirror_paf) = maps
        heat = rb.average_heatmaps_with_mirror(heat, mirror_heat)
        paf = rb.average_pafs_with_mirror(paf, mirror_paf)
        out[i] = paf_decoder.keypoints_from_joints(paf_decoder.decode(heat, paf).joints)
    return out


def _time(runs: dict, frames: np.ndarray, reps: int) -> dict[str, list[float]]:
    """frames/s of each way, the ways interleaved within every repetition."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            start = time.perf_counter()
            run(frames)
            rates[name].append(len(frames) / (time.perf_counter() - start))
    return rates


def _report(title: str, rates: dict[str, list[float]], reps: int) -> None:
    print(title)
    for name, values in rates.items():
        print(
            f"  {name:10s} median {statistics.median(values):7.3f} frames/s  (min {min(values):.3f}, max {max(values):.3f})"
        )
    ratios = [b / o for b, o in zip(rates["batched"], rates["one frame"], strict=True)]
    print(
        f"  batched / one frame: median {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x over {reps} interleaved repetitions)"
    )


def bench_rtpose(args: argparse.Namespace, frames: np.ndarray) -> None:
    torch.manual_seed(0)
    backend = rb.build_rtpose(device=args.device, batch_size=args.batch_size, pretrained=False)
    np.testing.assert_array_equal(
        backend.detect(frames), rtpose_one_frame(backend, frames)
    )  # warm-up
    runs = {"batched": backend.detect, "one frame": lambda f: rtpose_one_frame(backend, f)}
    _report(
        f"rtpose: {len(frames)} frames {args.size}x{args.size}, device {args.device}, "
        f"threads {args.threads}, batch {args.batch_size}",
        _time(runs, frames, args.reps),
        args.reps,
    )


def bench_identity(name: str, args: argparse.Namespace, frames: np.ndarray) -> None:
    from metrics.backends import build_identity_backend

    torch.manual_seed(0)
    backend = build_identity_backend(name, device=args.device, pretrained=False)

    def one_frame(f: np.ndarray) -> np.ndarray:
        return np.concatenate([backend.embed(f[i : i + 1]) for i in range(len(f))])

    np.testing.assert_allclose(backend.embed(frames), one_frame(frames), atol=1e-4)  # warm-up
    _report(
        f"{name}: {len(frames)} frames {args.size}x{args.size}, device {args.device}, "
        f"threads {args.threads}, batch {backend.batch_size}",
        _time({"batched": backend.embed, "one frame": one_frame}, frames, args.reps),
        args.reps,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--frames", type=int, default=2, help="rtpose's frames (the identities: 8x)")
    parser.add_argument("--batch-size", type=int, default=2, help="rtpose's batch size")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=("rtpose", "reid_baseline", "openface"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (8 * args.frames, args.size, args.size, 3), dtype=np.uint8)
    if args.only in (None, "rtpose"):
        bench_rtpose(args, frames[: args.frames])
    for name in ("reid_baseline", "openface"):
        if args.only in (None, name):
            bench_identity(name, args, frames)


if __name__ == "__main__":
    main()
