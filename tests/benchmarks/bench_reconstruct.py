"""Reconstruction throughput: ours (batched driving frames, the source encoded once per video)
vs. the reference's structure (``reconstruction.py`` of FOMM, MRAA, TPSMM and CPAB: the source's
keypoints/regions computed once per video, then one driving frame per call, the generator
re-encoding the source at every call), on the same model and the same video.

For each method and size, the model is built from its config at random weights (the cost of a
layer does not depend on its weights) in eval mode, and both sides first reconstruct the same
video: the benchmark stops when their predictions differ by more than ``--tolerance``. Then
repetitions alternate the two sides (and which goes first); the printed ratio is the median over
repetitions of reference time / our time, with its min-max spread.

- ``--size demo``: the methods' ``synthetic.yaml`` (64x64, the demo's models).
- ``--size 256``: the methods' ``taichi.yaml`` (256x256, the published architectures).
- ``--batch-sweep 1,4,16``: our frames/s at each batch size (what chose
  ``methods.engine.reconstruct.PIXELS_PER_CALL``); by default ours uses reconstruct's choice.
- ``--layout contiguous|channels_last``: ours in that memory layout instead of reconstruct's
  choice for the device (``methods.engine.reconstruct.MEMORY_FORMAT``: channels-last on a CPU);
  the reference side always runs contiguous, as the reference code does. What the layout is worth.
- ``--quick``: one repetition of a short video (a smoke test; its ratios mean nothing).

    python tests/benchmarks/bench_reconstruct.py --size demo --threads 2
    python tests/benchmarks/bench_reconstruct.py --size demo --threads 2 --layout contiguous
    python tests/benchmarks/bench_reconstruct.py --size 256 --frames 16 --threads 2
    python tests/benchmarks/bench_reconstruct.py --size 256 --device cuda
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from methods.base import AnimationModel  # noqa: E402
from methods.engine.config import load_method_config  # noqa: E402
from methods.engine.reconstruct import frames_per_call, memory_format, reconstruct_video  # noqa: E402
from methods.registry import build_model, list_methods  # noqa: E402

CONFIG = {"demo": "synthetic", "256": "taichi"}
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


@torch.no_grad()
def one_frame_per_call(model: AnimationModel, frames: torch.Tensor) -> torch.Tensor:
    """The reference reconstruction loop: the source's motion descriptor once per video, the
    generator's source encoding at every call."""
    source = frames[:1]
    motion_source = model.encode(source)
    out = []
    for t in range(frames.shape[0]):
        prediction = model.generate(source, motion_source, model.encode(frames[t : t + 1]))
        out.append(prediction["prediction"].clamp(0, 1))
    return torch.cat(out)


def build(method: str, size: str, device: torch.device) -> tuple[AnimationModel, tuple[int, int]]:
    config = load_method_config(REPO / f"methods/configs/{method}/{CONFIG[size]}.yaml")
    torch.manual_seed(0)
    model = build_model(config, with_losses=False).to(device).eval()
    height, width = config["dataset_params"]["frame_shape"][:2]
    return model, (height, width)


def video(frames: int, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    # A smooth moving pattern: keypoints and flows then vary from frame to frame as on real video.
    h, w = shape
    y, x = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    out = []
    for t in range(frames):
        cx, cy = 0.4 * torch.cos(torch.tensor(t / 5.0)), 0.4 * torch.sin(torch.tensor(t / 7.0))
        blob = torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.08)
        out.append(torch.stack([blob, 0.5 * (x + 1) * (1 - blob), 0.5 * (y + 1)]))
    return torch.stack(out).clamp(0, 1).to(device)


def timed(fn: Any, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(
    method: str, args: argparse.Namespace, device: torch.device, layout: torch.memory_format
) -> dict[str, float]:
    model, shape = build(method, args.size, device)
    frames = video(args.frames, shape, device)
    batch = args.batch_size or frames_per_call(shape, device)
    ours_model, ours_frames = model, frames
    if layout != torch.contiguous_format:
        # a copy: the reference side keeps the contiguous layout of the reference code
        ours_model = copy.deepcopy(model).to(memory_format=layout)
        ours_frames = frames.contiguous(memory_format=layout)
    ours = reconstruct_video(ours_model, ours_frames, batch_size=batch)
    reference = one_frame_per_call(model, frames)
    diff = float((ours - reference).abs().max())
    if diff > args.tolerance:
        raise SystemExit(f"{method}: outputs differ by {diff:.2e} (> {args.tolerance:g}); not timed")
    sides = {
        "reference": lambda: one_frame_per_call(model, frames),
        "ours": lambda: reconstruct_video(ours_model, ours_frames, batch_size=batch),
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    for rep in range(args.reps):
        order = list(sides) if rep % 2 == 0 else list(sides)[::-1]
        for name in order:
            times[name].append(timed(sides[name], device))
    ratios = [r / o for r, o in zip(times["reference"], times["ours"], strict=True)]
    row = {
        "ratio": statistics.median(ratios),
        "low": min(ratios),
        "high": max(ratios),
        "ours_fps": args.frames / statistics.median(times["ours"]),
        "reference_fps": args.frames / statistics.median(times["reference"]),
        "max_diff": diff,
        "batch": batch,
    }
    if args.batch_sweep:
        for batch in args.batch_sweep:
            spent = [timed(lambda b=batch: reconstruct_video(ours_model, ours_frames, batch_size=b), device)
                     for _ in range(max(1, args.reps // 2))]
            row[f"fps@{batch}"] = args.frames / statistics.median(spent)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(list_methods()))
    parser.add_argument("--size", choices=sorted(CONFIG), default="demo")
    parser.add_argument("--frames", type=int, default=64, help="frames of the reconstructed video")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="driving frames per call (ours; default: reconstruct's choice for the frame size)")
    parser.add_argument("--batch-sweep", default="", help="also time ours at these batch sizes, e.g. 4,8,16,32")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |ours - reference|")
    parser.add_argument("--layout", choices=["auto", *LAYOUTS], default="auto",
                        help="ours' memory layout (default: reconstruct's choice for the device)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 repetition of 4 frames")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.frames = 1, 4
    args.batch_sweep = [int(b) for b in args.batch_sweep.split(",") if b]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    layout = memory_format(device) if args.layout == "auto" else LAYOUTS[args.layout]
    layout_name = next(name for name, fmt in LAYOUTS.items() if fmt == layout)
    print(f"# reconstruction, {args.size} configs, {args.frames} frames, batch {args.batch_size or 'auto'}, "
          f"{args.reps} interleaved repetitions, device {device}, {torch.get_num_threads()} threads"
          + f", ours' layout {layout_name}" + (" (auto)" if args.layout == "auto" else ""))
    for method in args.methods.split(","):
        row = bench(method, args, device, layout)
        sweep = " ".join(f"{k}={v:.1f}" for k, v in row.items() if k.startswith("fps@"))
        print(f"RATIO {method} {row['ratio']:.2f}x (spread {row['low']:.2f}-{row['high']:.2f}) "
              f"ours {row['ours_fps']:.1f} frames/s, one-frame loop {row['reference_fps']:.1f} frames/s, "
              f"max |diff| {row['max_diff']:.1e}, batch {row['batch']}" + (f"; {sweep}" if sweep else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
