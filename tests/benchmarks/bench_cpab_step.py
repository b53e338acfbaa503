"""What does CPAB motion cost inside a whole training step?

Times full training steps (forward with every loss, backward, gradient clipping, Adam step) of
three models built from the same dataset config and run on the same batch:

- ``tpsmm``: TPSMM (``methods/configs/tpsmm/<config>.yaml``), the baseline;
- ``cpab fast``: CPAB (``methods/configs/cpab/<config>.yaml``) with the library's fast fit;
- ``cpab adam``: the same CPAB config with the release's fit (``fit: adam``, its iterations).

Repetitions interleave the three (the order rotates every repetition) so that a shared machine's
load hits all of them alike; the printed ratios are medians over repetitions of per-repetition
ratios, with their min-max spread. Target (issue 10): a CPAB step costs at most 2x a TPSMM step;
the release's procedure is shown for contrast.

    python tests/benchmarks/bench_cpab_step.py                      # the demo configs, 1 thread
    python tests/benchmarks/bench_cpab_step.py --config taichi --size 128 --batch 4 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from methods.engine.config import apply_overrides, load_method_config  # noqa: E402
from methods.registry import build_model  # noqa: E402


def build(method: str, args: argparse.Namespace, extra: dict[str, Any]) -> torch.nn.Module:
    config = load_method_config(REPO / f"methods/configs/{method}/{args.config}.yaml")
    overrides: dict[str, Any] = {"train_params.perceptual_loss": "pixel_pyramid", **extra}
    if method == "cpab":
        # The motion model is what is compared: CPAB's extra SAM/DINO losses (whose weights
        # are files this machine may lack) are off, as in the demo config.
        overrides["train_params.loss_weights.keypoint_semantic"] = 0
        overrides["train_params.loss_weights.structure"] = 0
    if args.batch:
        overrides["train_params.batch_size"] = args.batch
    if args.size:
        overrides["dataset_params.frame_shape"] = [args.size, args.size, 3]
    config = apply_overrides(config, overrides)
    torch.manual_seed(0)
    model = build_model(config, with_losses=True)
    model.set_epoch(0)
    model.train()
    model.optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999))
    model.batch_size = int(config["train_params"]["batch_size"])
    model.frame_shape = config["dataset_params"]["frame_shape"]
    return model


def step(model: torch.nn.Module, source: torch.Tensor, driving: torch.Tensor) -> float:
    start = time.perf_counter()
    losses, _ = model(source, driving)
    sum(losses.values()).backward()
    model.before_optimizer_step()
    model.optimizer.step()
    model.optimizer.zero_grad(set_to_none=True)
    if source.device.type == "cuda":
        torch.cuda.synchronize(source.device)  # the step's kernels, not their launch
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="synthetic", help="dataset config name (synthetic, taichi, ...)")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per repetition and side")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=0, help="frame size override (0: the config's)")
    parser.add_argument("--batch", type=int, default=0, help="batch size override (0: the config's)")
    parser.add_argument("--no-adam", action="store_true", help="skip the release's (slow) Adam fit")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the compiled hit-time search is CPU-only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    models = {
        "tpsmm": build("tpsmm", args, {}),
        "cpab fast": build("cpab", args, {"model_params.cpab_params.fit": "fast"}),
    }
    if not args.no_adam:
        models["cpab adam"] = build("cpab", args, {"model_params.cpab_params.fit": "adam"})
    device = torch.device(args.device)
    for model in models.values():
        model.to(device)
        # The optimizer was made before the move: Adam's state is created on first step, on
        # the parameters' (now moved) device.
    batch, (h, w, c) = models["tpsmm"].batch_size, models["tpsmm"].frame_shape
    generator = torch.Generator().manual_seed(0)
    source = torch.rand(batch, c, h, w, generator=generator).to(device)
    driving = torch.rand(batch, c, h, w, generator=generator).to(device)
    for model in models.values():  # warm-up: allocator, lazy caches
        step(model, source, driving)

    names = list(models)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(args.reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            times[name].append(sum(step(models[name], source, driving) for _ in range(args.steps)) / args.steps)

    print(f"config {args.config}: batch {batch}, {h}x{w}, device {device}, threads {args.threads}, {args.reps} interleaved "
          f"repetitions of {args.steps} steps")
    for name in names:
        print(f"{name:10s} median {statistics.median(times[name]):.3f} s/step "
              f"(min {min(times[name]):.3f}, max {max(times[name]):.3f})")
    for name in [n for n in ("cpab fast", "cpab adam") if n in times]:
        ratios = [a / b for a, b in zip(times[name], times["tpsmm"], strict=True)]
        print(f"RATIO {name} / tpsmm: median {statistics.median(ratios):.2f}x "
              f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
    if args.no_adam:
        return
    ratios = [a / b for a, b in zip(times["cpab adam"], times["cpab fast"], strict=True)]
    print(f"RATIO cpab adam / cpab fast: median {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
