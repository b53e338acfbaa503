"""Training the AVD network of a trained motion model (MRAA's ``train_avd``, for any method).

The motion model is frozen (eval mode, no gradients). For each training pair (source, driving)
of one video, the AVD network sees the source's motion parameters as identity and the driving
frame's, randomly rescaled by ``diag(sx, sy)`` with ``s ~ U[1 - random_scale, 1 + random_scale]``,
as pose, and must reproduce the driving frame's unscaled parameters: an L1 loss on points
(``lambda_shift``) and on 2x2 linear maps (``lambda_affine``), as the references do.
Adam (0.5, 0.999) with MultiStepLR, one epoch = the training list repeated ``num_repeats`` times.

Output: a new checkpoint (default ``checkpoint_avd.pt`` beside the input) holding every entry of
the input checkpoint plus ``avd_network`` and ``optimizer_avd``; the input is never modified,
so the DAG's training outputs stay valid. A per-epoch CSV log and an atomic resume state are
written next to it; a killed run restarts at its last finished epoch.

One difference from the references, on purpose: they leave the motion network in train mode,
so batch-norm running statistics of the region predictor drift during AVD training and are
saved; here the motion model is frozen entirely (its weights in the output equal the input's).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data_prep.devices import resolve_device
from data_prep.io import atomic_path, file_sha256
from methods.base import AnimationModel, Motion
from methods.engine import checkpoints
from methods.engine.train import EpochBatches, _code_fingerprint, build_dataset
from methods.models.avd import (
    LINEAR_KEYS,
    POINT_KEYS,
    AVDNetwork,
    align_identity,
    build_avd_network,
    random_scale,
)
from methods.registry import build_model

log = logging.getLogger(__name__)

#: MRAA's reference values (config/*.yaml ``train_avd_params``; TPSMM's differ only in
#: num_epochs 100 and milestones [70, 90]). ``id_bottle_size``/``pose_bottle_size`` default
#: to ``model_params.avd_network_params`` or 64.
DEFAULTS: dict[str, Any] = {
    "num_epochs": 30,
    "num_repeats": 150,
    "batch_size": 256,
    "epoch_milestones": [20, 25],
    "lr": 1.0e-3,
    "lambda_shift": 1.0,
    "lambda_affine": 1.0,
    "random_scale": 0.25,
    "num_workers": 0,
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "num_epochs": {"type": "integer", "minimum": 1},
        "num_repeats": {"type": "integer", "minimum": 1},
        "batch_size": {"type": "integer", "minimum": 2},  # batch norm needs two samples
        "epoch_milestones": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "lr": {"type": "number", "exclusiveMinimum": 0},
        "lambda_shift": {"type": "number", "minimum": 0},
        "lambda_affine": {"type": "number", "minimum": 0},
        "random_scale": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "num_workers": {"type": "integer", "minimum": 0},
        "id_bottle_size": {"type": "integer", "minimum": 1},
        "pose_bottle_size": {"type": "integer", "minimum": 1},
        # Reference keys that have no meaning here (the loader and logger differ); accepted so
        # that a reference train_avd_params section can be passed unchanged.
        "dataloader_workers": {"type": "integer", "minimum": 0},
        "checkpoint_freq": {"type": "integer", "minimum": 1},
    },
}

STATE_NAME = "train_avd_state.pt"
LOG_NAME = "train_avd_log.csv"


@dataclass(frozen=True)
class AVDOptions:
    """What an AVD training run needs besides the trained checkpoint."""

    checkpoint: Path
    dataset_root: Path
    out: Path
    #: ``train_avd_params`` overrides (see :data:`DEFAULTS`).
    params: dict[str, Any] | None = None
    #: Config of a released checkpoint that carries none.
    method_config: dict[str, Any] | None = None
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    #: Stop after this many epochs in this call (the run stays resumable); for crash tests.
    stop_after_epochs: int | None = None


def resolve_params(config: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """DEFAULTS < the config's ``train_avd_params`` / ``avd_network_params`` < ``overrides``."""
    network = config.get("model_params", {}).get("avd_network_params", {})
    params = {**DEFAULTS, "id_bottle_size": 64, "pose_bottle_size": 64}
    params.update({k: network[k] for k in ("id_bottle_size", "pose_bottle_size") if k in network})
    params.update(config.get("train_avd_params", {}))
    params.update(overrides or {})
    try:
        jsonschema.validate(params, SCHEMA)
    except jsonschema.ValidationError as err:
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ValueError(f"train_avd_params: invalid value at {where}: {err.message}") from err
    return params


def avd_losses(model: AnimationModel, rec: torch.Tensor, target: dict[str, torch.Tensor],
               params: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Weighted L1 between the decoded AVD output and the unscaled driving parameters."""
    decoded = model.avd_decode(rec, like=target)
    losses = {}
    for key in POINT_KEYS:
        if key in target:
            losses[f"rec_{key}"] = params["lambda_shift"] * (target[key] - decoded[key]).abs().mean()
    for key in LINEAR_KEYS:
        if key in target:
            losses[f"rec_{key}"] = params["lambda_affine"] * (target[key] - decoded[key]).abs().mean()
    if not losses:
        raise KeyError(f"AVD loss: motion has none of {POINT_KEYS + LINEAR_KEYS}; it has {sorted(target)}")
    return losses


def avd_step(model: AnimationModel, avd_network: AVDNetwork, source: torch.Tensor,
             driving: torch.Tensor, params: dict[str, Any],
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Losses of one AVD training batch (the motion model is used without gradients)."""
    with torch.no_grad():
        motion_id, motion_pose_gt = model.encode(source), model.encode(driving)
    return avd_motion_step(model, avd_network, motion_id, motion_pose_gt, params, generator)


def avd_motion_step(model: AnimationModel, avd_network: AVDNetwork, motion_id: Motion,
                    motion_pose_gt: Motion, params: dict[str, Any],
                    generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """:func:`avd_step` on already encoded source (identity) and driving (pose) motion."""
    with torch.no_grad():
        motion_pose = random_scale(motion_pose_gt, params["random_scale"], generator)
        motion_id = align_identity(model, motion_id, motion_pose)
        identity, pose = model.avd_encode(motion_id), model.avd_encode(motion_pose)
    return avd_losses(model, avd_network(identity, pose), motion_pose_gt, params)


def _fingerprint(checkpoint: Path, config: dict[str, Any], params: dict[str, Any],
                 options: AVDOptions) -> str:
    manifest = options.dataset_root / "manifest.csv"
    blob = json.dumps({
        "checkpoint": file_sha256(checkpoint),
        "config": config,
        "params": params,
        "seed": options.seed,
        "manifest": file_sha256(manifest) if manifest.exists() else None,
        "code": _code_fingerprint(),
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_avd(options: AVDOptions) -> Path:
    """Train an AVD network for ``options.checkpoint``'s model; return the written checkpoint."""
    payload = checkpoints.read(options.checkpoint)
    config = options.method_config or payload.get("animbench", {}).get("config")
    if config is None:
        raise checkpoints.CheckpointError(
            f"checkpoint {options.checkpoint} carries no animbench config; pass --method-config"
        )
    params = resolve_params(config, options.params)
    out = options.out
    out.parent.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(options.checkpoint, config, params, options)

    device = resolve_device(options.device)  # "auto", "cpu", "cuda", "cuda:N"
    torch.manual_seed(options.seed)
    model = build_model(config, with_losses=False)
    checkpoints.load_model_state(model, payload, source=str(options.checkpoint))
    model.to(device).eval()
    model.requires_grad_(False)
    try:
        avd_network = build_avd_network(model, params).to(device)
    except NotImplementedError as err:
        raise ValueError(f"method {config['method']!r} does not implement avd_encode/avd_decode") from err

    optimizer = torch.optim.Adam(avd_network.parameters(), lr=params["lr"], betas=(0.5, 0.999))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, params["epoch_milestones"], gamma=0.1)
    # The main trainer's dataset and loader, with AVD's repeats and batch size.
    data_config = copy.deepcopy(config)
    data_config["train_params"] = {**config.get("train_params", {}), "num_repeats": params["num_repeats"]}
    dataset = build_dataset(data_config, options.dataset_root, options.seed)
    if len(dataset) < params["batch_size"]:
        raise ValueError(
            f"{options.dataset_root}: {len(dataset)} training pairs per epoch is fewer than AVD "
            f"batch_size {params['batch_size']}; raise num_repeats or lower batch_size"
        )

    state_path = out.parent / STATE_NAME
    start_epoch, rows = 0, []
    if state_path.exists():
        state = checkpoints.read(state_path)
        if state.get("fingerprint") == fingerprint:
            avd_network.load_state_dict(state["avd_network"])
            optimizer.load_state_dict(state["optimizer_avd"])
            scheduler.load_state_dict(state["scheduler_avd"])
            start_epoch, rows = state["epoch"], state["log"]
            log.info("resuming AVD training in %s at epoch %d", out.parent, start_epoch)
        else:
            log.warning("ignoring %s: it belongs to another checkpoint, config, seed or code", state_path)

    num_epochs = params["num_epochs"]
    for epoch in range(start_epoch, num_epochs):
        if options.stop_after_epochs is not None and epoch - start_epoch >= options.stop_after_epochs:
            return state_path
        avd_network.train()
        dataset.set_epoch(epoch)  # augmentation draws keyed by (seed, epoch, index)
        # The main trainer's seeded batch order: a resumed run sees the batches an unbroken one would.
        loader = DataLoader(dataset, batch_sampler=EpochBatches(len(dataset), params["batch_size"], options.seed, epoch),
                            num_workers=params["num_workers"])
        # Random scales keyed by (seed, epoch): a resumed run draws what an unbroken one would.
        generator = torch.Generator().manual_seed(options.seed * 1_000_003 + epoch + 104_729)
        sums: dict[str, float] = {}
        steps, started = 0, time.perf_counter()
        bar = tqdm(loader, desc=f"avd epoch {epoch + 1}/{num_epochs}", disable=not options.progress, leave=False)
        for batch in bar:
            losses = avd_step(model, avd_network, batch["source"].to(device),
                              batch["driving"].to(device), params, generator)
            total = sum(losses.values())
            if not torch.isfinite(total):
                raise FloatingPointError(f"non-finite AVD loss at epoch {epoch}: { {k: float(v) for k, v in losses.items()} }")
            total.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.item()
            sums["total"] = sums.get("total", 0.0) + total.item()
            steps += 1
            bar.set_postfix(loss=f"{total.item():.4f}")
        scheduler.step()
        row = {"epoch": epoch + 1, "steps": steps, "seconds": round(time.perf_counter() - started, 3)}
        row.update({f"loss_{k}": v / max(steps, 1) for k, v in sums.items()})
        row["lr"] = optimizer.param_groups[0]["lr"]
        rows.append(row)
        checkpoints.save(state_path, {
            "avd_network": avd_network.state_dict(),
            "optimizer_avd": optimizer.state_dict(),
            "scheduler_avd": scheduler.state_dict(),
            "epoch": epoch + 1,
            "log": rows,
            "fingerprint": fingerprint,
        })
        with atomic_path(out.parent / LOG_NAME) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        log.info("AVD epoch %d/%d: %s", epoch + 1, num_epochs, row)

    animbench = dict(payload.get("animbench", {}))
    animbench.setdefault("config", config)
    animbench["avd"] = {
        **avd_network.sizes(),
        "params": params,
        "seed": options.seed,
        "fingerprint": fingerprint,
        "motion_checkpoint_sha256": file_sha256(options.checkpoint),
    }
    result = {
        **payload,
        "avd_network": avd_network.cpu().state_dict(),
        "optimizer_avd": optimizer.state_dict(),
        "animbench": animbench,
    }
    checkpoints.save(out, result)
    state_path.unlink(missing_ok=True)
    return out
