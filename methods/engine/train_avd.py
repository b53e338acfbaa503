"""Training the AVD network of a trained motion model (MRAA's ``train_avd``, for any method).

The motion model is frozen (eval mode, no gradients). For each training pair (source, driving)
of one video, the AVD network sees the source's motion parameters as identity and the driving
frame's, randomly rescaled by ``diag(sx, sy)`` with ``s ~ U[1 - random_scale, 1 + random_scale]``,
as pose, and must reproduce the driving frame's unscaled parameters: an L1 loss on points
(``lambda_shift``) and on 2x2 linear maps (``lambda_affine``), as the references do.
Adam (0.5, 0.999) with MultiStepLR, one epoch = the training list repeated ``num_repeats`` times.

Output: a new checkpoint (default ``checkpoint_avd.pt`` beside the input) holding every entry of
the input checkpoint plus ``avd_network`` and ``optimizer_avd``; the input is never modified,
so the DAG's training outputs stay valid. The training runs on the one trainer every method uses
(:mod:`methods.engine.train`): a per-epoch CSV log and an atomic resume state next to the output,
resumption after a crash or a SIGTERM (at the last saved step), several processes under torchrun.

One difference from the references, on purpose: they leave the motion network in train mode,
so batch-norm running statistics of the region predictor drift during AVD training and are
saved; here the motion model is frozen entirely (its weights in the output equal the input's).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import torch

from data_prep.devices import resolve_device
from data_prep.io import file_sha256
from methods.base import AnimationModel, Motion
from methods.engine import checkpoints, distributed
from methods.engine.train import (
    RESULT_NEUTRAL_KEYS,
    RunControl,
    TrainingTask,
    _code_fingerprint,
    build_dataset,
    run_task,
)
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
        # How often the trainer saves its resume state (besides every epoch end).
        "save_state_every_steps": {"type": "integer", "minimum": 0},
        "save_state_every_minutes": {"type": "number", "minimum": 0},
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
    #: Stop after this many optimizer steps in this call, saving the state mid-epoch; for tests.
    stop_after_steps: int | None = None


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
        # Like the trainer's: how often state is saved or data read never changes a result.
        "params": {k: v for k, v in params.items() if k not in RESULT_NEUTRAL_KEYS},
        "seed": options.seed,
        "manifest": file_sha256(manifest) if manifest.exists() else None,
        "code": _code_fingerprint(),
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class AVDTraining(torch.nn.Module):
    """The AVD network beside its frozen motion model, as the trainer sees a method: one
    optimizer group ``avd``, one saved sub-network ``avd_network``, ``forward`` -> the losses.

    Random scales come from the global generator, which the trainer's resume state carries, so
    a run resumed anywhere draws what an unbroken one would.
    """

    checkpoint_keys = ("avd_network",)

    def __init__(self, motion_model: AnimationModel, avd_network: AVDNetwork, params: dict[str, Any]) -> None:
        super().__init__()
        self.motion_model = motion_model.eval().requires_grad_(False)
        self.avd_network = avd_network
        self.params = params

    def train(self, mode: bool = True) -> AVDTraining:
        super().train(mode)
        self.motion_model.eval()  # frozen: its batch-norm statistics must not drift
        return self

    def optimizer_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        return {"avd": list(self.avd_network.parameters())}

    def set_epoch(self, epoch: int) -> None:
        pass

    def before_optimizer_step(self) -> None:
        pass

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> tuple[dict[str, torch.Tensor], None]:
        return avd_step(self.motion_model, self.avd_network, source, driving, self.params), None


def train_avd(options: AVDOptions) -> Path:
    """Train an AVD network for ``options.checkpoint``'s model; return the written checkpoint
    (the resume state instead when ``stop_after_epochs``/``stop_after_steps`` ended the call)."""
    payload = checkpoints.read(options.checkpoint)
    config = options.method_config or payload.get("animbench", {}).get("config")
    if config is None:
        raise checkpoints.CheckpointError(
            f"checkpoint {options.checkpoint} carries no animbench config; pass --method-config"
        )
    params = resolve_params(config, options.params)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    ctx = distributed.context_from_env()
    device = resolve_device(options.device)  # "auto", "cpu", "cuda", "cuda:N"
    with distributed.process_group(device, ctx):
        return run_task(_avd_task(payload, config, params, options, device), RunControl.of(options), ctx, device)


def _avd_task(payload: dict[str, Any], config: dict[str, Any], params: dict[str, Any],
              options: AVDOptions, device: torch.device) -> TrainingTask:
    fingerprint = _fingerprint(options.checkpoint, config, params, options)
    torch.manual_seed(options.seed)
    model = build_model(config, with_losses=False)
    checkpoints.load_model_state(model, payload, source=str(options.checkpoint))
    try:
        avd_network = build_avd_network(model, params)
    except NotImplementedError as err:
        raise ValueError(f"method {config['method']!r} does not implement avd_encode/avd_decode") from err
    # The main trainer's dataset and loader, with AVD's repeats and batch size.
    data_config = copy.deepcopy(config)
    data_config["train_params"] = {**config.get("train_params", {}), "num_repeats": params["num_repeats"]}
    train_params = {
        "num_epochs": params["num_epochs"],
        "num_repeats": params["num_repeats"],
        "batch_size": params["batch_size"],
        "epoch_milestones": params["epoch_milestones"],
        "lr_avd": params["lr"],
        **{k: params[k] for k in RESULT_NEUTRAL_KEYS if k in params},
    }
    return TrainingTask(
        model=AVDTraining(model, avd_network, params).to(device),
        train_params=train_params,
        dataset=build_dataset(data_config, options.dataset_root, options.seed),
        fingerprint=fingerprint,
        out_dir=options.out.parent,
        checkpoint=options.out,
        finish=functools.partial(_finish_avd, payload, config, params, options),
        state_name=STATE_NAME,
        log_name=LOG_NAME,
        outputs=(STATE_NAME, LOG_NAME, options.out.name),
        section="train_avd_params",
    )


def _finish_avd(payload: dict[str, Any], config: dict[str, Any], params: dict[str, Any],
                options: AVDOptions, trainer: Any) -> None:
    """Every entry of the input checkpoint plus ``avd_network`` and ``optimizer_avd``."""
    avd_network = trainer.model.avd_network
    animbench = dict(payload.get("animbench", {}))
    animbench.setdefault("config", config)
    animbench["avd"] = {
        **avd_network.sizes(),
        "params": params,
        "seed": options.seed,
        "fingerprint": trainer.fingerprint,
        "motion_checkpoint_sha256": file_sha256(options.checkpoint),
    }
    state = {k: v.detach().cpu() for k, v in avd_network.state_dict().items()}
    checkpoints.save(options.out, {
        **payload,
        "avd_network": state,
        "optimizer_avd": trainer.optimizers["avd"].state_dict(),
        "animbench": animbench,
    })
