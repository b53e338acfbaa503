"""The one trainer every method uses.

Adam per optimizer group with MultiStepLR milestones as in the reference implementations, a
per-epoch CSV log, and an atomic resume state written after every epoch. All randomness is
either keyed by (seed, epoch, index) in the dataset or carried in the resume state, so a run
killed at any point and restarted ends with the same weights as an uninterrupted run on CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data_prep.io import atomic_path, file_sha256
from data_prep.loading import AugmentationConfig, FramePairDataset
from methods import checkpoints
from methods.registry import build_model

log = logging.getLogger(__name__)

STATE_NAME = "train_state.pt"
LOG_NAME = "train_log.csv"


@dataclass(frozen=True)
class TrainOptions:
    """What a training run needs beyond the method config."""

    dataset_root: Path
    out_dir: Path
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    #: Stop after this many epochs in this call (the run stays resumable); for crash tests.
    stop_after_epochs: int | None = None
    #: Pretrained weights (VGG-19 for the perceptual loss, ...).
    weights_dir: Path = Path("resources/weights")
    #: Where the method config came from, recorded in ``run.json`` for the reports.
    config_source: str = ""


def _code_fingerprint() -> str:
    """Hash of the sources training depends on: changed code never resumes a stale state."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for package in ("methods", "data_prep"):
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_fingerprint(config: dict[str, Any], options: TrainOptions) -> str:
    """Identity of a run: a resume state from any other run is ignored."""
    manifest = options.dataset_root / "manifest.csv"
    blob = json.dumps(
        {
            "config": config,
            "seed": options.seed,
            "manifest": file_sha256(manifest) if manifest.exists() else None,
            "code": _code_fingerprint(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_dataset(config: dict[str, Any], dataset_root: Path, seed: int) -> FramePairDataset:
    data = config["dataset_params"]
    height, width = data["frame_shape"][:2]
    return FramePairDataset(
        dataset_root,
        split="train",
        frame_size=(height, width),
        augmentation=AugmentationConfig.from_dict(data.get("augmentation_params", {})),
        num_repeats=config["train_params"]["num_repeats"],
        seed=seed,
    )


def _build_optimizers(model, train_params: dict[str, Any]):
    optimizers, schedulers = {}, {}
    for name, params in model.optimizer_groups().items():
        key = f"lr_{name}"
        if key not in train_params:
            raise KeyError(f"train_params has no {key!r} for the {name} optimizer")
        optimizers[name] = torch.optim.Adam(params, lr=train_params[key], betas=(0.5, 0.999))
        schedulers[name] = torch.optim.lr_scheduler.MultiStepLR(
            optimizers[name], milestones=train_params["epoch_milestones"], gamma=0.1
        )
    return optimizers, schedulers


def _weights_payload(model, optimizers) -> dict[str, Any]:
    """Networks and optimizers under the reference checkpoint keys."""
    return {
        **checkpoints.model_state(model),
        **{f"optimizer_{k}": opt.state_dict() for k, opt in optimizers.items()},
    }


def _epoch_loader(dataset: FramePairDataset, train_params: dict[str, Any], seed: int, epoch: int) -> DataLoader:
    dataset.set_epoch(epoch)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    workers = int(train_params.get("num_workers", 0))
    return DataLoader(
        dataset,
        batch_size=train_params["batch_size"],
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        generator=generator,
        persistent_workers=False,
    )


def train(config: dict[str, Any], options: TrainOptions) -> Path:
    """Train ``config``'s method on ``options.dataset_root``; return the final checkpoint path.

    Writes ``checkpoint.pt`` (reference layout), ``train_log.csv`` and, while running,
    ``train_state.pt`` (the resume state) into ``options.out_dir``.
    """
    out_dir = options.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    train_params = config["train_params"]
    num_epochs = int(train_params["num_epochs"])
    fingerprint = run_fingerprint(config, options)

    torch.manual_seed(options.seed)
    model = build_model(config, weights_dir=options.weights_dir).to(options.device)
    optimizers, schedulers = _build_optimizers(model, train_params)
    dataset = build_dataset(config, options.dataset_root, options.seed)
    if len(dataset) < train_params["batch_size"]:
        raise ValueError(
            f"{options.dataset_root}: {len(dataset)} training pairs per epoch is fewer than "
            f"batch_size {train_params['batch_size']}; raise num_repeats or lower batch_size"
        )

    start_epoch, rows = 0, []
    state_path = out_dir / STATE_NAME
    if state_path.exists():
        state = checkpoints.read(state_path)
        if state.get("fingerprint") == fingerprint:
            checkpoints.load_model_state(model, state, source=str(state_path))
            for name, opt in optimizers.items():
                opt.load_state_dict(state[f"optimizer_{name}"])
                schedulers[name].load_state_dict(state[f"scheduler_{name}"])
            torch.set_rng_state(state["torch_rng"])
            start_epoch, rows = state["epoch"], state["log"]
            log.info("resuming %s at epoch %d", out_dir, start_epoch)
        else:
            log.warning("ignoring %s: it belongs to another config, seed, dataset or code version", state_path)

    for epoch in range(start_epoch, num_epochs):
        if options.stop_after_epochs is not None and epoch - start_epoch >= options.stop_after_epochs:
            return state_path
        model.train()
        model.set_epoch(epoch)
        loader = _epoch_loader(dataset, train_params, options.seed, epoch)
        sums: dict[str, float] = {}
        steps, started = 0, time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{num_epochs}", disable=not options.progress, leave=False)
        for batch in bar:
            source = batch["source"].to(options.device)
            driving = batch["driving"].to(options.device)
            losses, _ = model(source, driving)
            total = sum(losses.values())
            if not torch.isfinite(total):
                raise FloatingPointError(f"non-finite loss at epoch {epoch}: { {k: float(v) for k, v in losses.items()} }")
            total.backward()
            model.before_optimizer_step()
            for opt in optimizers.values():
                opt.step()
                opt.zero_grad(set_to_none=True)
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.item()
            sums["total"] = sums.get("total", 0.0) + total.item()
            steps += 1
            bar.set_postfix(loss=f"{total.item():.4f}")
        for sched in schedulers.values():
            sched.step()
        row = {"epoch": epoch + 1, "steps": steps, "seconds": round(time.perf_counter() - started, 3)}
        row.update({f"loss_{k}": v / max(steps, 1) for k, v in sums.items()})
        row.update({f"lr_{k}": opt.param_groups[0]["lr"] for k, opt in optimizers.items()})
        rows.append(row)
        state = {
            **_weights_payload(model, optimizers),
            **{f"scheduler_{k}": s.state_dict() for k, s in schedulers.items()},
            "epoch": epoch + 1,
            "torch_rng": torch.get_rng_state(),
            "log": rows,
            "fingerprint": fingerprint,
        }
        checkpoints.save(state_path, state)
        with atomic_path(out_dir / LOG_NAME) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        log.info("epoch %d/%d: %s", epoch + 1, num_epochs, row)

    final = {
        **_weights_payload(model, optimizers),
        "epoch": num_epochs,
        "animbench": {"config": config, "seed": options.seed, "fingerprint": fingerprint},
    }
    checkpoint_path = out_dir / "checkpoint.pt"
    checkpoints.save(checkpoint_path, final)
    info = {
        "method": config["method"],
        "method_config": options.config_source,
        "perceptual_loss": train_params.get("perceptual_loss", "vgg19"),
        "epochs": num_epochs,
        "train_seconds": round(sum(r["seconds"] for r in rows), 1),
        "seed": options.seed,
        "fingerprint": fingerprint,
    }
    with atomic_path(out_dir / "run.json") as tmp:
        tmp.write_text(json.dumps(info, indent=2))
    state_path.unlink(missing_ok=True)
    return checkpoint_path
