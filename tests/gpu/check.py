"""One GPU check: every CUDA path of the project, run blind on one GPU in a few minutes.

    bash tests/gpu/check.sh OUT_DIR            # on a machine with one CUDA GPU
    bash tests/gpu/check.sh OUT_DIR --dry      # anywhere: every step on a tiny config, on CPU

Each step runs in its own process with its own time budget (it is killed when the budget is
spent, and the summary says so), writes ``OUT_DIR/<step>.json`` and adds rows to one table,
printed at the end and written to ``OUT_DIR/summary.json``:

- ``env``: torch, CUDA, the GPU; ``--device auto`` resolves to CUDA.
- ``train_step``: every method's training step (the demo config, and the 256x256 reference
  config at batch 2) in float32, bf16 autocast and fp16 autocast with the grad scaler: steps/s
  (median of interleaved repetitions) and peak memory; a few AMP steps from the same weights
  and batch stay finite and within 5 % of float32's losses.
- ``ddp``: the trainer under torchrun with NCCL at world size 1, and 2 processes sharing the GPU
  (NCCL refuses two ranks on one GPU: reported, not failed).
- ``syncbn``: MRAA's batch norms converted to CUDA SyncBatchNorm in a one-process NCCL group
  give plain batch norm's forward and gradients.
- ``resume``: a training killed with SIGKILL after a saved step resumes and ends near the
  unbroken run (CUDA kernels are not bit-deterministic: compared to how far training moved).
- ``reconstruct``: frames/s of the batched reconstruction against one driving frame per call
  (the reference's structure), outputs checked equal first.
- ``evaluate``: ``tests/benchmarks/bench_metrics.py`` on the device (batched evaluation against
  the reference's one-frame loop).
- ``cpab``: ``tests/benchmarks/bench_cpab_step.py`` on the device (a CPAB step against TPSMM's;
  the compiled hit-time search is CPU-only, so this times what CUDA runs instead).
- ``cuda_vs_cpu``: the same tiny run trained, reconstructed and measured on CPU and on CUDA:
  L1 within 5 %.

``--dry`` runs the same code on CPU (gloo instead of NCCL, the CPU batch norm sync, the demo
config only, one repetition), so CI keeps the script from rotting; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: Step name -> seconds it may take on a GPU (the dry run gets the same budgets). Together they
#: leave the 8-minute target room for the start-up and the install.
BUDGETS: dict[str, int] = {
    "env": 30,
    "train_step": 120,
    "ddp": 60,
    "syncbn": 30,
    "resume": 60,
    "reconstruct": 40,
    "evaluate": 45,
    "cpab": 40,
    "cuda_vs_cpu": 60,
}
#: The tiny dataset and FOMM run of the steps that train (the tests' fixtures).
TINY_DATASET = {"size": 64, "num_identities": 3, "num_test_identities": 1, "train_videos": 4,
                "test_videos": 2, "min_frames": 5, "max_frames": 7, "seed": 3}
AMP_TOLERANCE = 0.05
L1_TOLERANCE = 0.05


# --- the orchestrator ------------------------------------------------------------------------


def _python_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO),
            "PYTHONUNBUFFERED": "1"}


def run_step(name: str, out: Path, dry: bool) -> dict[str, Any]:
    """Run one step in its own process group; kill it when its budget is spent."""
    budget = BUDGETS[name]
    command = [sys.executable, "-m", "tests.gpu.check", "--step", name, str(out)] + (["--dry"] if dry else [])
    started = time.monotonic()
    log = out / f"{name}.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=REPO, env=_python_env(), stdout=handle,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    seconds = round(time.monotonic() - started, 1)
    result_path = out / f"{name}.json"
    if result_path.is_file():
        result = json.loads(result_path.read_text())
    else:
        timed_out = process.returncode == -signal.SIGKILL
        tail = log.read_text().strip().splitlines()[-1:] if log.is_file() else []
        result = {"step": name, "status": "timeout" if timed_out else "error", "rows": [],
                  "notes": [f"over its {budget} s budget" if timed_out else f"exit {process.returncode}", *tail]}
    result["seconds"] = seconds
    return result


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"\n{'step':12s} {'status':8s} {'s':>6s}  figures")
    for result in results:
        rows = result.get("rows") or [{}]
        for i, row in enumerate(rows):
            head = (f"{result['step']:12s} {result['status']:8s} {result['seconds']:6.1f}" if i == 0
                    else " " * 28)
            print(f"{head}  {', '.join(f'{k}={_cell(v)}' for k, v in row.items())}")
        for note in result.get("notes", []):
            print(f"{'':28s}  note: {note}")


def orchestrate(out: Path, dry: bool, only: list[str] | None) -> int:
    out.mkdir(parents=True, exist_ok=True)
    steps = only or list(BUDGETS)
    unknown = sorted(set(steps) - set(BUDGETS))
    if unknown:
        raise SystemExit(f"unknown steps {unknown}; known: {', '.join(BUDGETS)}")
    results = []
    for name in steps:
        (out / f"{name}.json").unlink(missing_ok=True)
        print(f"[gpu-check] {name} (budget {BUDGETS[name]} s)...", flush=True)
        results.append(run_step(name, out, dry))
        print(f"[gpu-check] {name}: {results[-1]['status']} in {results[-1]['seconds']} s", flush=True)
    summary = {"dry": dry, "steps": results, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print_table(results)
    failed = [r["step"] for r in results if r["status"] not in ("pass", "skip")]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


# --- shared pieces of the steps --------------------------------------------------------------


def _device(dry: bool):
    import torch

    from data_prep.devices import resolve_device

    if dry:
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
        return torch.device("cpu")
    return resolve_device("cuda")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _tiny_dataset(root: Path) -> Path:
    from data_prep.synthetic import generate

    return generate(TINY_DATASET, root / "synthetic")


def _tiny_fomm_overrides() -> dict[str, Any]:
    from tests.conftest import TINY_FOMM

    return dict(TINY_FOMM)


def _animbench(*args: str, device: str | None = None) -> list[str]:
    command = [sys.executable, "-m", "animbench", *args]
    return command + (["--device", device] if device else [])


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=REPO, env=_python_env(), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])} ... exited {done.returncode}: {done.stderr.strip()[-800:]}")
    return done


def _weights_distance(a: dict, b: dict, start: dict | None = None) -> tuple[float, float]:
    """(distance between two checkpoints' networks, distance the first moved from ``start``)."""
    apart = moved = 0.0
    for net in ("generator", "kp_detector"):
        for key, value in a[net].items():
            if value.is_floating_point():
                apart += float((b[net][key].float() - value.float()).pow(2).sum())
                if start is not None:
                    moved += float((value.float() - start[net][key].float()).pow(2).sum())
    return apart**0.5, moved**0.5


# --- the steps ---------------------------------------------------------------------------------


def step_env(dry: bool, work: Path) -> dict[str, Any]:
    import torch

    from data_prep.devices import resolve_device

    auto = resolve_device("auto")
    row = {"torch": torch.__version__, "cuda": torch.version.cuda or "none",
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
           "auto": str(auto)}
    ok = auto.type == ("cpu" if dry else "cuda")
    return {"status": "pass" if ok else "fail", "rows": [row],
            "notes": [] if ok else ["--device auto did not resolve to CUDA"]}


def step_train_step(dry: bool, work: Path) -> dict[str, Any]:
    import torch

    from methods.engine.config import apply_overrides, load_method_config
    from methods.registry import build_model, list_methods
    from tests.benchmarks.bench_methods import Side, timed, vgg_weights

    device = _device(dry)
    precisions = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    configs = [("synthetic", None, None)] + ([] if dry else [("taichi", 256, 2)])
    reps, steps = (1, 1) if dry else (3, 3)
    rows, notes, ok = [], [], True
    with vgg_weights(REPO / "resources/weights") as weights_dir:
        for method in list_methods():
            for name, size, batch in configs:
                config = load_method_config(REPO / f"methods/configs/{method}/{name}.yaml")
                overrides: dict[str, Any] = {"train_params.batch_size": batch or 2}
                if size:
                    overrides["dataset_params.frame_shape"] = [size, size, 3]
                if method == "cpab":  # SAM/DINO weights are files the machine may lack
                    overrides["train_params.loss_weights.keypoint_semantic"] = 0
                    overrides["train_params.loss_weights.structure"] = 0
                config = apply_overrides(config, overrides)
                height, width, channels = config["dataset_params"]["frame_shape"]
                generator = torch.Generator().manual_seed(0)
                batches = [(torch.rand(overrides["train_params.batch_size"], channels, height, width, generator=generator).to(device),
                            torch.rand(overrides["train_params.batch_size"], channels, height, width, generator=generator).to(device))
                           for _ in range(2)]
                torch.manual_seed(0)
                first = build_model(config, weights_dir=weights_dir)
                state = first.state_dict()
                sides = {}
                for label, amp in precisions.items():
                    model = build_model(config, weights_dir=weights_dir)
                    model.load_state_dict(state)
                    sides[label] = Side(label, model, config, device, amp, False, False)
                # Agreement first: from the same weights and batch, the first step's losses.
                losses = {}
                for label, side in sides.items():
                    torch.manual_seed(1)  # the same equivariance warps on every side
                    side.model.train()
                    autocast = (torch.autocast(device.type, dtype=side.amp) if side.amp is not None
                                else torch.autocast(device.type, enabled=False))
                    with autocast:
                        terms, _ = side.model(*batches[0])
                    losses[label] = {k: float(v.detach()) for k, v in terms.items()}
                    side.model.zero_grad(set_to_none=True)
                for side in sides.values():
                    side.step(*batches[0])  # warm-up
                rates: dict[str, list[float]] = {label: [] for label in sides}
                peaks: dict[str, list[float]] = {label: [] for label in sides}
                for rep in range(reps):
                    order = list(sides) if rep % 2 == 0 else list(sides)[::-1]
                    for label in order:
                        rate, peak = timed(sides[label], batches, steps)
                        rates[label].append(rate)
                        if peak is not None:
                            peaks[label].append(peak)
                for label, side in sides.items():
                    total = sum(losses[label].values())
                    reference = sum(losses["fp32"].values())
                    gap = abs(total - reference) / max(abs(reference), 1e-12)
                    finite = all(torch.isfinite(torch.tensor(v)) for v in losses[label].values())
                    # ... and the weights after every step this side took (warm-up and timed).
                    finite &= all(bool(torch.isfinite(p).all()) for p in side.model.parameters())
                    good = finite and gap <= AMP_TOLERANCE
                    ok &= good
                    if not good:
                        notes.append(f"{method}/{name} {label}: loss {total:.5g} vs fp32 {reference:.5g}, "
                                     f"weights {'finite' if finite else 'NOT finite'}")
                    rows.append({"method": method, "config": f"{name} {height}x{width} b{overrides['train_params.batch_size']}",
                                 "precision": label, "steps/s": statistics.median(rates[label]),
                                 "peak MiB": statistics.median(peaks[label]) if peaks[label] else "n/a",
                                 "loss vs fp32": round(gap, 5)})
    return {"status": "pass" if ok else "fail", "rows": rows, "notes": notes}


def _train_command(dataset: Path, out: Path, device: str, extra: dict[str, Any] | None = None) -> list[str]:
    overrides = {**_tiny_fomm_overrides(), **(extra or {})}
    return ["train", "--method-config", str(REPO / "methods/configs/fomm/synthetic.yaml"),
            "--overrides", json.dumps(overrides), "--dataset", str(dataset), "--out", str(out),
            "--seed", "4", "--no-progress", "--device", device]


def _train_seconds(run: Path) -> float:
    import pandas as pd

    return float(pd.read_csv(run / "train_log.csv")["seconds"].sum())


def step_ddp(dry: bool, work: Path) -> dict[str, Any]:
    device = "cpu" if dry else "cuda"
    dataset = _tiny_dataset(work)
    rows, notes, ok = [], [], True
    for nproc in (1, 2):
        run = work / f"ddp{nproc}"
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                    "-m", "animbench"]
        # Two ranks on one GPU: both must name cuda:0 (plain cuda would give rank 1 cuda:1).
        target = device if nproc == 1 or dry else "cuda:0"
        command = launcher + _train_command(dataset, run, target)
        done = subprocess.run(command, cwd=REPO, env={**_python_env(), "OMP_NUM_THREADS": "1"},
                              capture_output=True, text=True, timeout=BUDGETS["ddp"])
        backend = "gloo" if dry else "nccl"
        if done.returncode == 0:
            info = json.loads((run / "run.json").read_text())
            rows.append({"processes": info["processes"], "backend": backend, "device": info["device"],
                         "train s": _train_seconds(run)})
            ok &= info["processes"] == nproc
        elif nproc == 2 and not dry:
            reason = (done.stderr.strip().splitlines() or ["?"])[-1][:200]
            rows.append({"processes": 2, "backend": backend, "device": "one GPU", "train s": "n/a"})
            notes.append(f"2 processes on one GPU not possible here: {reason}")
        else:
            ok = False
            notes.append(f"{nproc} process(es): {done.stderr.strip()[-400:]}")
    return {"status": "pass" if ok else "fail", "rows": rows, "notes": notes}


def step_syncbn(dry: bool, work: Path) -> dict[str, Any]:
    import copy

    import torch
    import torch.distributed as dist

    from methods.engine.config import load_method_config
    from methods.engine.distributed import synchronise_batchnorm
    from methods.registry import build_model

    device = _device(dry)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    dist.init_process_group("gloo" if dry else "nccl", rank=0, world_size=1)
    try:
        config = load_method_config(REPO / "methods/configs/mraa/synthetic.yaml")
        torch.manual_seed(0)
        plain = build_model(config, with_losses=False).to(device).train()
        synced = synchronise_batchnorm(copy.deepcopy(plain), device)
        kinds = sorted({type(m).__name__ for m in synced.modules() if "BatchNorm" in type(m).__name__})
        frames = torch.rand(4, 3, 64, 64, device=device)
        outputs = []
        for model in (plain, synced):
            motion = model.encode(frames)
            value = sum(v.float().pow(2).mean() for v in motion.values() if v.is_floating_point())
            value.backward()
            grads = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
            outputs.append((float(value), grads))
        gap = abs(outputs[0][0] - outputs[1][0]) / max(abs(outputs[0][0]), 1e-12)
        # Over the whole gradient (relative norm): the sync computes the variance another way
        # (E[x^2] - E[x]^2 over the group), which moves the last float32 digits, and biases
        # before a batch norm have gradients that are zero up to that rounding.
        flat = [torch.cat([g.flatten() for g in grads]) for _, grads in outputs]
        grad_gap = float((flat[0] - flat[1]).norm() / flat[1].norm().clamp_min(1e-12))
    finally:
        dist.destroy_process_group()
    expected = "GlobalBatchNorm" if dry else "SyncBatchNorm"
    # CUDA's SyncBatchNorm uses the native kernels' arithmetic; the CPU form differentiates
    # its own formula, measured 1.7e-3 apart from plain batch norm.
    ok = expected in kinds and gap < 1e-4 and grad_gap < (1e-2 if dry else 1e-3)
    return {"status": "pass" if ok else "fail",
            "rows": [{"batch norms": "/".join(kinds), "output gap": gap, "max relative grad gap": grad_gap}],
            "notes": [] if ok else [f"expected {expected} equal to plain batch norm at world size 1"]}


def step_resume(dry: bool, work: Path) -> dict[str, Any]:
    import torch

    from methods.engine import checkpoints
    from methods.engine.config import load_method_config
    from methods.engine.train import STATE_NAME
    from methods.registry import build_model

    device = "cpu" if dry else "cuda"
    dataset = _tiny_dataset(work)
    extra = {"train_params.save_state_every_steps": 1, "train_params.num_epochs": 3}
    whole, broken = work / "whole", work / "broken"
    _run(_animbench(*_train_command(dataset, whole, device, extra)), BUDGETS["resume"])
    process = subprocess.Popen(_animbench(*_train_command(dataset, broken, device, extra)), cwd=REPO,
                               env=_python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state, deadline = broken / STATE_NAME, time.monotonic() + BUDGETS["resume"] / 2
    while not state.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed_at = None
    if process.poll() is None:
        time.sleep(0.3)
        process.send_signal(signal.SIGKILL)
        process.wait()
        if state.is_file():
            saved = checkpoints.read(state)
            killed_at = f"epoch {saved['epoch'] + 1} step {saved['step']}"
    _run(_animbench(*_train_command(dataset, broken, device, extra)), BUDGETS["resume"])
    a, b = checkpoints.read(whole / "checkpoint.pt"), checkpoints.read(broken / "checkpoint.pt")
    torch.manual_seed(4)
    start = checkpoints.model_state(build_model(load_method_config(
        REPO / "methods/configs/fomm/synthetic.yaml", overrides={**_tiny_fomm_overrides(), **extra})))
    apart, moved = _weights_distance(a, b, start)
    ok = killed_at is not None and apart < 0.02 * moved
    return {"status": "pass" if ok else "fail",
            "rows": [{"killed at": killed_at, "apart": apart, "moved": moved}],
            "notes": [] if killed_at is not None else ["the run ended before it could be killed"]}


def step_reconstruct(dry: bool, work: Path) -> dict[str, Any]:
    import torch

    from data_prep.loading import VideoDataset
    from methods.engine.config import load_method_config
    from methods.engine.reconstruct import reconstruct_video
    from methods.registry import build_model

    device = _device(dry)
    dataset = VideoDataset(_tiny_dataset(work), split="test", frame_size=(64, 64))
    # Dry: one video's first four frames (two batches of the batched pass at batch 2).
    videos = ([dataset[0]["frames"][:4].to(device)] if dry
              else [dataset[i]["frames"].to(device) for i in range(len(dataset))])
    batch_size = 2 if dry else 16
    frames = sum(v.shape[0] for v in videos)
    rows, ok = [], True
    reps = 1 if dry else 5
    for method in ("fomm", "mraa", "tpsmm", "cpab"):
        config = load_method_config(REPO / f"methods/configs/{method}/synthetic.yaml")
        torch.manual_seed(0)
        model = build_model(config, with_losses=False).to(device).eval()
        batched = torch.cat([reconstruct_video(model, v, batch_size=batch_size) for v in videos])
        single = torch.cat([reconstruct_video(model, v, batch_size=1) for v in videos])
        gap = float((batched - single).abs().max())
        ok &= gap < 1e-4
        rates: dict[int, list[float]] = {batch_size: [], 1: []}
        for rep in range(reps):
            for batch in ((batch_size, 1) if rep % 2 == 0 else (1, batch_size)):
                _sync(device)
                started = time.perf_counter()
                for v in videos:
                    reconstruct_video(model, v, batch_size=batch)
                _sync(device)
                rates[batch].append(frames / (time.perf_counter() - started))
        rows.append({"method": method, "batch": batch_size, "batched fps": statistics.median(rates[batch_size]),
                     "one-frame fps": statistics.median(rates[1]),
                     "ratio": statistics.median(a / b for a, b in zip(rates[batch_size], rates[1], strict=True)),
                     "max gap": gap})
    return {"status": "pass" if ok else "fail", "rows": rows, "notes": []}


def _ratio_lines(text: str, marker: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if marker in line]


def step_evaluate(dry: bool, work: Path) -> dict[str, Any]:
    device = "cpu" if dry else "cuda"
    command = [sys.executable, str(REPO / "tests/benchmarks/bench_metrics.py"), "--device", device,
               "--reps", "1" if dry else "3", "--batch-size", "64"]
    done = _run(command, BUDGETS["evaluate"])
    lines = _ratio_lines(done.stdout, "frames/s") + _ratio_lines(done.stdout, "batched (batch")
    return {"status": "pass", "rows": [{"line": line} for line in lines], "notes": []}


def step_cpab(dry: bool, work: Path) -> dict[str, Any]:
    device = "cpu" if dry else "cuda"
    command = [sys.executable, str(REPO / "tests/benchmarks/bench_cpab_step.py"), "--device", device,
               "--reps", "1" if dry else "5", "--steps", "1" if dry else "2", "--no-adam"]
    if not dry:
        command += ["--config", "taichi", "--size", "256", "--batch", "4"]
    done = _run(command, BUDGETS["cpab"])
    lines = _ratio_lines(done.stdout, "s/step") + _ratio_lines(done.stdout, "RATIO")
    return {"status": "pass", "rows": [{"line": line} for line in lines], "notes": []}


def step_cuda_vs_cpu(dry: bool, work: Path) -> dict[str, Any]:
    import pandas as pd

    dataset = _tiny_dataset(work)
    devices = ("cpu", "cpu") if dry else ("cpu", "cuda")
    means = []
    for i, device in enumerate(devices):
        run = work / f"run{i}-{device}"
        _run(_animbench(*_train_command(dataset, run, device)), BUDGETS["cuda_vs_cpu"])
        _run(_animbench("reconstruct", "--checkpoint", str(run / "checkpoint.pt"), "--dataset", str(dataset),
                        "--out", str(run / "reconstruction"), "--no-progress", device=device), BUDGETS["cuda_vs_cpu"])
        _run(_animbench("evaluate", "--reconstruction", str(run / "reconstruction"), "--dataset", str(dataset),
                        "--protocol", "l1", "--out", str(run / "metrics.csv"), "--no-progress", device=device),
             BUDGETS["cuda_vs_cpu"])
        means.append(float(pd.read_csv(run / "metrics.csv")["l1"].mean()))
    gap = abs(means[1] - means[0]) / means[0]
    ok = gap <= L1_TOLERANCE
    return {"status": "pass" if ok else "fail",
            "rows": [{"L1 cpu": means[0], f"L1 {devices[1]}": means[1], "relative gap": gap}],
            "notes": [] if ok else [f"L1 on {devices[1]} is {gap:.1%} from the CPU run's (tolerance {L1_TOLERANCE:.0%})"]}


STEPS = {name: globals()[f"step_{name}"] for name in BUDGETS}


def run_one(name: str, out: Path, dry: bool) -> int:
    """The child process: run step ``name`` and write ``out/<name>.json``."""
    with tempfile.TemporaryDirectory(prefix=f"gpu-check-{name}-") as tmp:
        try:
            result = STEPS[name](dry, Path(tmp))
        except Exception as err:  # noqa: BLE001  (any failure is this step's result)
            result = {"status": "error", "rows": [], "notes": [f"{type(err).__name__}: {err}"]}
            traceback.print_exc()
    result["step"] = name
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for summary.json and each step's json and log")
    parser.add_argument("--dry", action="store_true", help="on CPU, tiny configs: checks the script itself")
    parser.add_argument("--only", default=None, help=f"comma-separated steps (default: all: {','.join(BUDGETS)})")
    parser.add_argument("--step", default=None, help=argparse.SUPPRESS)  # a child process's one step
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    if args.step:
        return run_one(args.step, out, args.dry)
    return orchestrate(out, args.dry, args.only.split(",") if args.only else None)


if __name__ == "__main__":
    sys.exit(main())
