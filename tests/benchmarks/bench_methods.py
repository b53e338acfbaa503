"""Training speed and peak memory of every registered method: optimised vs. as the reference runs it.

For each method in ``methods.registry.list_methods()``, two copies of the same network (same
initial weights, same batches) run full training steps (forward with every loss, backward, the
method's pre-step hook, Adam step) as the trainer does:

- ``reference``: eager, float32, default (contiguous) memory format: how the reference code runs.
- ``optimised``: ``--amp bf16|fp16`` autocast, ``--channels-last`` (weights and images), and
  optionally ``--compile`` (torch.compile of the whole model).

Repetitions alternate the two sides (and which goes first), each timing ``--steps`` steps after
``--warmup`` untimed ones; the printed ratio is the median over repetitions of
optimised/reference steps per second, with its min-max spread. Peak memory (CUDA only: the
allocator's peak above what was allocated before the side ran) is reported the same way.

Defaults are the reference setting: the method's ``taichi.yaml`` (256x256, the reference batch
size). ``--size``/``--batch`` shrink it for a CPU; ``--quick`` runs each method's small
``synthetic.yaml`` at batch 2 for one step (a smoke test; its ratios mean nothing).

The VGG-19 of the perceptual loss is randomly initialised when ``resources/weights/vgg19.pth``
is absent: the same layers cost the same time whatever their weights.

    python tests/benchmarks/bench_methods.py --device cuda --amp bf16 --channels-last
    python tests/benchmarks/bench_methods.py --size 128 --batch 4 --threads 2    # CPU
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from methods.engine.config import apply_overrides, load_method_config  # noqa: E402
from methods.registry import build_model, list_methods  # noqa: E402

AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def method_config(method: str, args: argparse.Namespace) -> dict[str, Any]:
    name = "synthetic" if args.quick else args.dataset
    config = load_method_config(REPO / f"methods/configs/{method}/{name}.yaml")
    overrides: dict[str, Any] = {}
    if args.quick:
        overrides["train_params.batch_size"] = 2
    if args.batch:
        overrides["train_params.batch_size"] = args.batch
    if args.size:
        channels = config["dataset_params"]["frame_shape"][2]
        overrides["dataset_params.frame_shape"] = [args.size, args.size, channels]
    return apply_overrides(config, overrides)


@contextlib.contextmanager
def vgg_weights(weights_dir: Path):
    """Yield a weights folder holding vgg19.pth: the real one, else a random-init stand-in."""
    import methods.losses.perceptual as perceptual

    real = weights_dir / "vgg19.pth"
    if real.is_file():
        yield weights_dir
        return
    from torchvision.models import vgg19

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vgg19.pth"
        torch.save(vgg19(weights=None).state_dict(), path)
        original = perceptual.resolve
        perceptual.resolve = lambda name, folder=None: path  # skip the checksum of the real file
        try:
            print(f"note: {real} absent; VGG-19 randomly initialised (same cost)")
            yield Path(tmp)
        finally:
            perceptual.resolve = original


class Side:
    """One copy of the network with its optimizers and its way of running."""

    def __init__(self, name: str, model: torch.nn.Module, config: dict[str, Any], device: torch.device,
                 amp: torch.dtype | None, channels_last: bool, compile_model: bool) -> None:
        self.name, self.device, self.amp, self.channels_last = name, device, amp, channels_last
        self.model = model.to(device).train()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.set_epoch(0)
        train_params = config["train_params"]
        self.optimizers = [
            torch.optim.Adam(params, lr=train_params.get(f"lr_{name_}", 2e-4), betas=(0.5, 0.999))
            for name_, params in self.model.optimizer_groups().items()
        ]
        self.forward = torch.compile(self.model) if compile_model else self.model
        # fp16 needs loss scaling; bf16 and float32 do not.
        self.scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None

    def describe(self) -> str:
        amp = {None: "float32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[self.amp]
        layout = "channels_last" if self.channels_last else "contiguous"
        compiled = ", compiled" if self.forward is not self.model else ""
        return f"{amp}, {layout}{compiled}"

    def step(self, source: torch.Tensor, driving: torch.Tensor) -> None:
        if self.channels_last:
            source = source.contiguous(memory_format=torch.channels_last)
            driving = driving.contiguous(memory_format=torch.channels_last)
        autocast = (torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None
                    else contextlib.nullcontext())
        with autocast:
            losses, _ = self.forward(source, driving)
            total = sum(losses.values())
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            for opt in self.optimizers:
                self.scaler.unscale_(opt)
        else:
            total.backward()
        self.model.before_optimizer_step()
        for opt in self.optimizers:
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                opt.step()
            opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.update()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(side: Side, batches: list[tuple[torch.Tensor, torch.Tensor]], steps: int) -> tuple[float, float | None]:
    """(steps per second, peak extra MiB or None off CUDA) over ``steps`` steps."""
    device = side.device
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    for i in range(steps):
        side.step(*batches[i % len(batches)])
    sync(device)
    elapsed = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if device.type == "cuda" else None
    return steps / elapsed, peak


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} spread [{min(values):.3f}, {max(values):.3f}] n={len(values)}"


def bench_method(method: str, args: argparse.Namespace, device: torch.device, weights_dir: Path) -> None:
    config = method_config(method, args)
    height, width, channels = config["dataset_params"]["frame_shape"]
    batch = config["train_params"]["batch_size"]
    torch.manual_seed(args.seed)
    reference_model = build_model(copy.deepcopy(config), weights_dir=weights_dir)
    optimised_model = build_model(copy.deepcopy(config), weights_dir=weights_dir)
    optimised_model.load_state_dict(reference_model.state_dict())
    sides = [
        Side("reference", reference_model, config, device, None, False, False),
        Side("optimised", optimised_model, config, device, AMP[args.amp], args.channels_last, args.compile),
    ]
    generator = torch.Generator().manual_seed(args.seed)
    batches = [
        (torch.rand(batch, channels, height, width, generator=generator).to(device),
         torch.rand(batch, channels, height, width, generator=generator).to(device))
        for _ in range(2)
    ]
    params = sum(p.numel() for p in reference_model.parameters()) / 1e6
    print(f"METHOD {method} {height}x{width} batch {batch} device {device} threads {torch.get_num_threads()} "
          f"params {params:.1f}M")
    for side in sides:
        for _ in range(args.warmup):
            side.step(*batches[0])
    speed: dict[str, list[float]] = {s.name: [] for s in sides}
    memory: dict[str, list[float]] = {s.name: [] for s in sides}
    ratios, memory_ratios = [], []
    for rep in range(args.reps):
        order = sides if rep % 2 == 0 else sides[::-1]  # alternate who runs first
        result = {side.name: timed(side, batches, args.steps) for side in order}
        for name, (rate, peak) in result.items():
            speed[name].append(rate)
            if peak is not None:
                memory[name].append(peak)
        ratios.append(result["optimised"][0] / result["reference"][0])
        if result["reference"][1]:
            memory_ratios.append(result["optimised"][1] / result["reference"][1])
    for side in sides:
        line = f"  {side.name:9s} ({side.describe()}): steps/s {summary(speed[side.name])}"
        line += f"; peak MiB {summary(memory[side.name])}" if memory[side.name] else "; peak memory: CUDA only"
        print(line)
    print(f"RATIO {method} steps_per_s optimised/reference {summary(ratios)}")
    if memory_ratios:
        print(f"RATIO {method} peak_memory optimised/reference {summary(memory_ratios)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=None, help="comma-separated subset (default: every registered method)")
    parser.add_argument("--dataset", default="taichi", help="config name: methods/configs/<method>/<dataset>.yaml")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", choices=sorted(AMP), default="none", help="optimised side's autocast dtype")
    parser.add_argument("--channels-last", action="store_true", help="optimised side uses channels_last")
    parser.add_argument("--compile", action="store_true", help="optimised side runs torch.compile(model)")
    parser.add_argument("--batch", type=int, default=None, help="override the config's batch size")
    parser.add_argument("--size", type=int, default=None, help="override the frame size (square)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side per repetition")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights-dir", default=str(REPO / "resources/weights"))
    parser.add_argument("--quick", action="store_true", help="smoke test: synthetic configs, batch 2, 1 step, 2 reps")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.reps, args.warmup = 1, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    methods = args.methods.split(",") if args.methods else list_methods()
    unknown = sorted(set(methods) - set(list_methods()))
    if unknown:
        parser.error(f"unknown methods {unknown}; registered: {list_methods()}")
    with vgg_weights(Path(args.weights_dir)) as weights_dir:
        for method in methods:
            bench_method(method, args, device, weights_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
