"""The one trainer every method uses.

Adam per optimizer group with MultiStepLR milestones as in the reference implementations, a
per-epoch CSV log, and an atomic resume state written after every epoch and, optionally, every
``train_params.save_state_every_steps`` steps or ``save_state_every_minutes`` minutes. All
randomness is either keyed by (seed, epoch, index) in the dataset or carried in the resume state
(with the position inside the epoch), so a run killed at any point and restarted ends with the
same weights as an uninterrupted run on CPU.

SIGTERM and SIGUSR1 (what SLURM sends before a time limit or pre-emption) make the trainer save
its state at the end of the current step and stop with :class:`TrainingInterrupted`; rerunning
the same command continues from there.

Several processes (``torchrun``, see :mod:`methods.engine.distributed`) split every global batch of
``batch_size`` pairs evenly; rank 0 writes every file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from data_prep.devices import describe, resolve_device
from data_prep.io import atomic_path, file_sha256
from data_prep.loading import AugmentationConfig, FramePairDataset
from methods.engine import checkpoints, distributed
from methods.registry import build_model

log = logging.getLogger(__name__)

STATE_NAME = "train_state.pt"
LOG_NAME = "train_log.csv"
CHECKPOINT_NAME = "checkpoint.pt"
RUN_INFO_NAME = "run.json"

#: train_params keys that change how often the state is saved or how data is read, never the
#: numbers a run produces: a state saved under other values still resumes.
RESULT_NEUTRAL_KEYS = ("save_state_every_steps", "save_state_every_minutes", "num_workers")

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingError(RuntimeError):
    """Training stopped for a reason the user can act on; the message is one line.

    ``exit_code`` is the status ``animbench train`` exits with after printing the message.
    """

    exit_code = 1


class TrainingDiverged(TrainingError):
    """A loss, weight or buffer became NaN or infinite; the last good state is kept."""


class TrainingInterrupted(TrainingError):
    """A pre-emption signal arrived; the resume state was saved before stopping."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + int(signum)  # what a shell reports for a process the signal ended


@dataclass(frozen=True)
class TrainOptions:
    """What a training run needs beyond the method config."""

    dataset_root: Path
    out_dir: Path
    seed: int = 0
    #: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    device: str = "auto"
    progress: bool = True
    #: Stop after this many epochs in this call (the run stays resumable); for crash tests.
    stop_after_epochs: int | None = None
    #: Stop after this many optimizer steps in this call, saving the state mid-epoch; for tests.
    stop_after_steps: int | None = None
    #: Pretrained weights (VGG-19 for the perceptual loss, ...).
    weights_dir: Path = Path("resources/weights")
    #: Where the method config came from, recorded in ``run.json`` for the reports.
    config_source: str = ""


def _code_fingerprint() -> str:
    """Hash of the sources training depends on: changed code never resumes a stale state."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[2]
    for package in ("methods", "data_prep"):
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_fingerprint(config: dict[str, Any], options: TrainOptions) -> str:
    """Identity of a run: a resume state from any other run is ignored."""
    manifest = options.dataset_root / "manifest.csv"
    train_params = {k: v for k, v in config["train_params"].items() if k not in RESULT_NEUTRAL_KEYS}
    blob = json.dumps(
        {
            "config": {**config, "train_params": train_params},
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
    augmentation = AugmentationConfig.from_dict(data.get("augmentation_params", {}))
    if augmentation.crop_size is not None and augmentation.crop_size != (height, width):
        raise ValueError(
            f"dataset_params.augmentation_params.crop_param size {list(augmentation.crop_size)} "
            f"must equal frame_shape's {[height, width]} (the crop is what the model sees)"
        )
    return FramePairDataset(
        dataset_root,
        split="train",
        frame_size=(height, width),
        augmentation=augmentation,
        num_repeats=config["train_params"]["num_repeats"],
        seed=seed,
        id_sampling=bool(data.get("id_sampling", False)),
    )


class EpochBatches(Sampler[list[int]]):
    """The batches of one epoch: a seeded shuffle cut into global batches of ``batch_size``
    (the incomplete last one dropped), from batch ``start`` on, each cut into ``world_size``
    equal slices of which this process takes slice ``rank``.

    The order depends only on (seed, epoch), so every process, and a resumed run, sees the same
    global batches as an uninterrupted single-process run.
    """

    def __init__(
        self, size: int, batch_size: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if batch_size % world_size:
            raise ValueError(
                f"train_params.batch_size {batch_size} is the global batch and must divide evenly "
                f"over {world_size} processes; change batch_size or the number of processes"
            )
        self.size, self.batch_size, self.seed, self.epoch = size, batch_size, seed, epoch
        self.start, self.rank, self.world_size = start, rank, world_size

    @property
    def num_batches(self) -> int:
        return self.size // self.batch_size

    def __len__(self) -> int:
        return max(self.num_batches - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        share = self.batch_size // self.world_size
        for b in range(self.start, self.num_batches):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield batch[self.rank * share : (self.rank + 1) * share]


def _build_optimizers(model, train_params: dict[str, Any]):
    optimizers, schedulers = {}, {}
    for name, params in model.optimizer_groups().items():
        key = f"lr_{name}"
        if key not in train_params:
            raise KeyError(f"train_params has no {key!r} for the {name} optimizer")
        # weight_decay: TPSMM's reference uses 1e-4 (L2 added to the gradient, as torch Adam
        # does); FOMM and MRAA use none, so an absent key means Adam's own 0.
        optimizers[name] = torch.optim.Adam(
            params,
            lr=train_params[key],
            betas=(0.5, 0.999),
            weight_decay=float(train_params.get("weight_decay", 0.0)),
        )
        schedulers[name] = torch.optim.lr_scheduler.MultiStepLR(
            optimizers[name], milestones=train_params["epoch_milestones"], gamma=0.1
        )
    return optimizers, schedulers


def losses_off(train_params: dict[str, Any]) -> list[str]:
    """The loss terms a config switches off: ``loss_weights`` entries that are 0 at every scale.

    Recorded in ``run.json`` and shown in the reports, so that a row trained without a term
    (e.g. the demo's CPAB without the SAM and DINO losses, whose weights files are absent offline)
    says so beside its numbers.
    """
    off = []
    for name, weight in dict(train_params.get("loss_weights", {})).items():
        values = weight if isinstance(weight, list) else [weight]
        if all(float(v) == 0 for v in values):
            off.append(name)
    return sorted(off)


def _weights_payload(model, optimizers) -> dict[str, Any]:
    """Networks and optimizers under the reference checkpoint keys."""
    return {
        **checkpoints.model_state(model),
        **{f"optimizer_{k}": opt.state_dict() for k, opt in optimizers.items()},
    }


def _non_finite(model) -> list[str]:
    """Names of the weights and buffers of the saved sub-networks holding NaN or inf."""
    bad = []
    for key in model.checkpoint_keys:
        for name, tensor in getattr(model, key).state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                bad.append(f"{key}.{name}")
    return bad


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def remove_stale_temporaries(out_dir: Path, names: tuple[str, ...] | None = None) -> list[Path]:
    """Delete temporary files a killed earlier run left half-written in ``out_dir`` (only those
    of ``names``, the files this run writes, when given)."""
    removed = checkpoints.stale_temporaries(out_dir, names)
    for path in removed:
        path.unlink(missing_ok=True)
        log.info("removed %s, left by an interrupted write", path)
    return removed


class _StopSignals:
    """Record SIGTERM/SIGUSR1 instead of dying, so the trainer can save and exit cleanly."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True)
class _Precision:
    dtype: torch.dtype | None
    channels_last: bool

    @classmethod
    def from_params(cls, train_params: dict[str, Any]) -> _Precision:
        mode = train_params.get("mixed_precision", "none")
        if mode not in ("none", *_AMP_DTYPES):
            raise ValueError(f"train_params.mixed_precision {mode!r}: use none, bf16 or fp16")
        return cls(_AMP_DTYPES.get(mode), bool(train_params.get("channels_last", False)))

    def autocast(self, device: torch.device):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)

    def images(self, tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        tensor = tensor.to(device, non_blocking=True)
        return tensor.contiguous(memory_format=torch.channels_last) if self.channels_last else tensor


@dataclass(frozen=True)
class RunControl:
    """How one call of the trainer runs (never what it computes, except ``seed``)."""

    seed: int = 0
    progress: bool = True
    #: Stop after this many epochs in this call (the run stays resumable); for crash tests.
    stop_after_epochs: int | None = None
    #: Stop after this many optimizer steps in this call, saving the state mid-epoch; for tests.
    stop_after_steps: int | None = None

    @classmethod
    def of(cls, options: Any) -> RunControl:
        """The run control fields of a method's or an AVD run's options."""
        return cls(options.seed, options.progress, options.stop_after_epochs, options.stop_after_steps)


@dataclass(frozen=True)
class TrainingTask:
    """What the one trainer trains: a method (:func:`train`) or an AVD network
    (:func:`methods.engine.train_avd.train_avd`).

    ``model`` offers the training interface of :class:`methods.base.AnimationModel`:
    ``checkpoint_keys``, ``optimizer_groups()``, ``set_epoch()``, ``before_optimizer_step()`` and
    ``forward(source, driving) -> (losses, outputs)``. ``train_params`` holds the trainer's keys
    (``num_epochs``, ``batch_size``, ``epoch_milestones``, ``lr_<group>``, ...). ``finish(trainer)``
    writes the final outputs on rank 0 after the last epoch; ``checkpoint`` is what it writes.
    """

    model: torch.nn.Module
    train_params: dict[str, Any]
    dataset: FramePairDataset
    fingerprint: str
    out_dir: Path
    checkpoint: Path
    finish: Callable[[_Trainer], None]
    state_name: str = STATE_NAME
    log_name: str = LOG_NAME
    #: Every file the run writes into ``out_dir``: their stale temporaries are removed at start.
    outputs: tuple[str, ...] = ()
    #: The config section ``train_params`` came from, for error messages.
    section: str = "train_params"


def train(config: dict[str, Any], options: TrainOptions) -> Path:
    """Train ``config``'s method on ``options.dataset_root``; return the final checkpoint path.

    Writes ``checkpoint.pt`` (reference layout), ``train_log.csv``, ``run.json`` and, while
    running, ``train_state.pt`` (the resume state) into ``options.out_dir``. Returns the state
    path instead when ``stop_after_epochs``/``stop_after_steps`` ended the call early. Raises
    :class:`TrainingDiverged` on non-finite losses or weights and :class:`TrainingInterrupted`
    after a SIGTERM/SIGUSR1.
    """
    ctx = distributed.context_from_env()
    device = resolve_device(options.device)
    with distributed.process_group(device, ctx):
        return run_task(_method_task(config, options, ctx, device), RunControl.of(options), ctx, device)


def run_task(task: TrainingTask, control: RunControl, ctx: distributed.Context, device: torch.device) -> Path:
    """Train ``task`` to its end (or to a stop ``control`` asks for), resuming its saved state."""
    return _Trainer(task, control, ctx, device).run()


def _method_task(config: dict[str, Any], options: TrainOptions, ctx: distributed.Context, device: torch.device) -> TrainingTask:
    fingerprint = run_fingerprint(config, options)
    torch.manual_seed(options.seed)
    model = build_model(config, weights_dir=options.weights_dir)
    if ctx.enabled and distributed.wants_sync_batchnorm(config, model):
        distributed.synchronise_batchnorm(model, device)
    model = model.to(device)
    if _Precision.from_params(config["train_params"]).channels_last:
        model = model.to(memory_format=torch.channels_last)
    return TrainingTask(
        model=model,
        train_params=config["train_params"],
        dataset=build_dataset(config, options.dataset_root, options.seed),
        fingerprint=fingerprint,
        out_dir=options.out_dir,
        checkpoint=options.out_dir / CHECKPOINT_NAME,
        finish=functools.partial(_finish_method, config, options),
        outputs=(STATE_NAME, LOG_NAME, CHECKPOINT_NAME, RUN_INFO_NAME),
    )


def _finish_method(config: dict[str, Any], options: TrainOptions, trainer: _Trainer) -> None:
    """The method's checkpoint (reference layout) and run.json, which the reports read."""
    final = {
        **_weights_payload(trainer.model, trainer.optimizers),
        "epoch": trainer.num_epochs,
        "animbench": {"config": config, "seed": options.seed, "fingerprint": trainer.fingerprint},
    }
    checkpoints.save(trainer.task.checkpoint, final)
    train_params = config["train_params"]
    info = {
        "method": config["method"],
        "method_config": options.config_source,
        "perceptual_loss": train_params.get("perceptual_loss", "vgg19"),
        "losses_off": losses_off(train_params),
        "epochs": trainer.num_epochs,
        "train_seconds": round(sum(r["seconds"] for r in trainer.rows), 1),
        "seed": options.seed,
        "fingerprint": trainer.fingerprint,
        "device": describe(trainer.device),
        "processes": trainer.ctx.world_size,
        "mixed_precision": train_params.get("mixed_precision", "none"),
        "channels_last": trainer.precision.channels_last,
    }
    with atomic_path(options.out_dir / RUN_INFO_NAME) as tmp:
        tmp.write_text(json.dumps(info, indent=2))


class _Trainer:
    def __init__(self, task: TrainingTask, options: RunControl, ctx: distributed.Context, device: torch.device) -> None:
        self.task, self.options, self.ctx, self.device = task, options, ctx, device
        self.out_dir = task.out_dir
        self.train_params = train_params = task.train_params
        self.num_epochs = int(train_params["num_epochs"])
        self.every_steps = int(train_params.get("save_state_every_steps", 0))
        self.every_seconds = 60.0 * float(train_params.get("save_state_every_minutes", 0))
        self.precision = _Precision.from_params(train_params)
        self.fingerprint = task.fingerprint
        self.state_path = self.out_dir / task.state_name

        self.model = model = task.model
        self.optimizers, self.schedulers = _build_optimizers(model, train_params)
        self.scaler = (
            torch.amp.GradScaler(device.type) if self.precision.dtype == torch.float16 else None
        )
        self.dataset = task.dataset
        if len(self.dataset) < train_params["batch_size"]:
            raise ValueError(
                f"{self.dataset.root}: {len(self.dataset)} training pairs per epoch is fewer than "
                f"{task.section}.batch_size {train_params['batch_size']}; raise "
                f"{task.section}.num_repeats or lower {task.section}.batch_size"
            )
        # The DDP wrapper only runs the forward pass; hooks and state go through ``model``.
        self.network = distributed.wrap(model, device, ctx)
        if ctx.enabled:
            # Model-side randomness (equivariance warps) must differ between processes.
            torch.manual_seed(options.seed * 1_000_003 + 7919 * ctx.rank)

        self.epoch, self.step, self.rows = 0, 0, []
        self.sums: dict[str, float] = {}
        self.epoch_seconds = 0.0

    # -- resume state ---------------------------------------------------------------------
    def _resume(self) -> None:
        if not self.state_path.exists():
            return
        state = checkpoints.read(self.state_path)
        if state.get("fingerprint") != self.fingerprint:
            if self.ctx.is_main:
                log.warning(
                    "ignoring %s: it belongs to another config, seed, dataset or code version",
                    self.state_path,
                )
            return
        networks = {k: state[k] for k in self.model.checkpoint_keys if k in state}
        checkpoints.load_model_state(self.model, networks, source=str(self.state_path))
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[f"optimizer_{name}"])
            self.schedulers[name].load_state_dict(state[f"scheduler_{name}"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        if len(rng) == self.ctx.world_size:
            _set_rng_state(rng[self.ctx.rank], self.device)
        else:
            log.warning(
                "%s was written by %d processes, this run has %d: model-side random draws will "
                "not replay exactly", self.state_path, len(rng), self.ctx.world_size,
            )
            _set_rng_state(rng[0], self.device)
        self.epoch, self.step, self.rows = state["epoch"], state["step"], state["log"]
        self.sums, self.epoch_seconds = dict(state["epoch_sums"]), float(state["epoch_seconds"])
        if self.ctx.is_main:
            log.info("resuming %s at epoch %d, step %d", self.out_dir, self.epoch + 1, self.step)

    def _check_finite(self, what: str, epoch: int, step: int) -> None:
        """Refuse to save NaN/inf weights or buffers (``epoch`` counts from 1)."""
        bad = _non_finite(self.model)
        # Every process must agree, or the others would wait for the failed one forever.
        bad_anywhere = distributed.all_reduce_sum(torch.tensor([float(len(bad))]), self.ctx)
        if bad_anywhere.item() > 0:
            bad = bad or ["(on another process)"]
            raise TrainingDiverged(
                f"training diverged at epoch {epoch}, step {step}: {len(bad)} weight(s)/"
                f"buffer(s) are NaN or infinite (first: {bad[0]}); not saving {what}, "
                f"{self._kept()}; lower the learning rates (train_params.lr_*) and re-run"
            )

    def _kept(self) -> str:
        if self.state_path.exists():
            return f"the last good state {self.state_path} is kept"
        return "no earlier state was saved"

    def _save_state(self, seconds_in_epoch: float) -> None:
        """Write the resume state atomically (rank 0), after every process checked its weights."""
        # A finished epoch is stored as (epoch + 1, step 0); the message names the step taken.
        epoch, step = (self.epoch, self.rows[-1]["steps"]) if self.step == 0 and self.rows else (self.epoch + 1, self.step)
        self._check_finite(str(self.state_path), epoch, step)
        rngs = distributed.gather_objects(_rng_state(self.device), self.ctx)
        if self.ctx.is_main:
            state = {
                **_weights_payload(self.model, self.optimizers),
                **{f"scheduler_{k}": s.state_dict() for k, s in self.schedulers.items()},
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "epoch": self.epoch,
                "step": self.step,
                "epoch_sums": dict(self.sums),
                "epoch_seconds": seconds_in_epoch,
                "rng": rngs,
                "world_size": self.ctx.world_size,
                "log": self.rows,
                "fingerprint": self.fingerprint,
            }
            checkpoints.save(self.state_path, state)
            log.info("state saved at epoch %d, step %d", self.epoch + 1, self.step)
        distributed.barrier(self.ctx)

    # -- one step ---------------------------------------------------------------------------
    def _train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """Forward, backward and optimizer steps; returns this step's losses averaged over processes.

        A model with ``discriminator_groups`` (FOMM's GAN) takes a second phase, as the
        reference: the generator-side optimizers step on the generator's loss (whatever it left
        in the discriminator's gradients is dropped), then the discriminator's loss on the
        detached prediction steps the discriminator's optimizers."""
        source = self.precision.images(batch["source"], self.device)
        driving = self.precision.images(batch["driving"], self.device)
        adversary = tuple(getattr(self.model, "discriminator_groups", ()))
        with self.precision.autocast(self.device):
            losses, generated = self.network(source, driving)
        total = sum(losses.values())
        logged = self._reduced(losses, total)
        generator_side = [name for name in self.optimizers if name not in adversary]
        self._backward(total, generator_side)
        self.model.before_optimizer_step()
        self._step(generator_side)
        if adversary:
            for name in adversary:
                self.optimizers[name].zero_grad(set_to_none=True)
            with self.precision.autocast(self.device):
                losses_d, _ = self.network(source, driving, phase="discriminator", generated=generated)
            total_d = sum(losses_d.values())
            logged_d = self._reduced(losses_d, total_d)
            self._backward(total_d, list(adversary))
            self._step(list(adversary))
            logged.update({k: v for k, v in logged_d.items() if k != "total"})
        if self.scaler is not None:
            self.scaler.update()
        return logged

    def _reduced(self, losses: dict[str, torch.Tensor], total: torch.Tensor) -> dict[str, float]:
        """The losses and their total averaged over processes; a non-finite one stops training."""
        names = sorted(losses)
        values = torch.stack([losses[k].detach().float() for k in names] + [total.detach().float()])
        values = distributed.all_reduce_sum(values, self.ctx) / self.ctx.world_size
        if not torch.isfinite(values).all():
            detail = ", ".join(f"{k}={v:.4g}" for k, v in zip([*names, "total"], values.tolist(), strict=True))
            raise TrainingDiverged(
                f"training diverged at epoch {self.epoch + 1}, step {self.step + 1}: non-finite loss "
                f"({detail}); {self._kept()}; lower the learning rates (train_params.lr_*) and re-run"
            )
        return dict(zip([*names, "total"], values.tolist(), strict=True))

    def _backward(self, total: torch.Tensor, names: list[str]) -> None:
        """Backward; under fp16 the gradients of optimizers ``names`` are then unscaled, so that
        ``before_optimizer_step`` (gradient clipping) sees true gradients."""
        if self.scaler is None:
            total.backward()
            return
        self.scaler.scale(total).backward()
        for name in names:
            self.scaler.unscale_(self.optimizers[name])

    def _step(self, names: list[str]) -> None:
        """Step the optimizers ``names`` and clear every gradient they hold."""
        for name in names:
            opt = self.optimizers[name]
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                opt.step()
            opt.zero_grad(set_to_none=True)

    def _stop_requested(self, signals: _StopSignals, last_save: float) -> tuple[bool, bool]:
        """(stop for a signal, save because of the time budget), agreed by every process."""
        timed = self.every_seconds > 0 and time.monotonic() - last_save >= self.every_seconds
        flags = torch.tensor([float(signals.received is not None), float(timed)])
        flags = distributed.all_reduce_sum(flags, self.ctx)
        return bool(flags[0] > 0), bool(flags[1] > 0)

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> Path:
        if self.ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.out_dir, self.task.outputs)
        distributed.barrier(self.ctx)
        self._resume()
        steps_this_call = 0
        epochs_this_call = 0
        last_save = time.monotonic()
        with _StopSignals() as signals:
            while self.epoch < self.num_epochs:
                if self.options.stop_after_epochs is not None and epochs_this_call >= self.options.stop_after_epochs:
                    return self.state_path
                self.model.train()
                self.model.set_epoch(self.epoch)
                self.dataset.set_epoch(self.epoch)
                sampler = EpochBatches(
                    len(self.dataset), self.train_params["batch_size"], self.options.seed, self.epoch,
                    start=self.step, rank=self.ctx.rank, world_size=self.ctx.world_size,
                )
                loader = DataLoader(
                    self.dataset, batch_sampler=sampler,
                    num_workers=int(self.train_params.get("num_workers", 0)),
                    # Its own generator: creating the iterator draws a worker seed, which must
                    # not advance the global RNG the model's random warps draw from.
                    generator=torch.Generator().manual_seed(self.options.seed * 1_000_003 + self.epoch),
                )
                started = time.perf_counter() - self.epoch_seconds
                bar = tqdm(
                    loader, desc=f"epoch {self.epoch + 1}/{self.num_epochs}", initial=self.step,
                    total=sampler.num_batches, disable=not (self.options.progress and self.ctx.is_main),
                    leave=False,
                )
                for batch in bar:
                    losses = self._train_step(batch)
                    for key, value in losses.items():
                        self.sums[key] = self.sums.get(key, 0.0) + value
                    self.step += 1
                    steps_this_call += 1
                    bar.set_postfix(loss=f"{losses['total']:.4f}")
                    if self.step == sampler.num_batches:
                        break  # the epoch-end save below covers the last step
                    stop, timed = self._stop_requested(signals, last_save)
                    stepped = self.every_steps > 0 and steps_this_call % self.every_steps == 0
                    limit = self.options.stop_after_steps is not None and steps_this_call >= self.options.stop_after_steps
                    if stop or timed or stepped or limit:
                        self._save_state(time.perf_counter() - started)
                        last_save = time.monotonic()
                    if stop:
                        raise self._interrupted(signals)
                    if limit:
                        return self.state_path
                self._end_epoch(time.perf_counter() - started, sampler.num_batches)
                last_save = time.monotonic()
                epochs_this_call += 1
                if self._stop_requested(signals, last_save)[0]:
                    raise self._interrupted(signals)
                if self.options.stop_after_steps is not None and steps_this_call >= self.options.stop_after_steps:
                    return self.state_path
        return self._finish()

    def _interrupted(self, signals: _StopSignals) -> TrainingInterrupted:
        signum = signals.received or signal.SIGTERM
        name = signal.Signals(signum).name
        return TrainingInterrupted(
            f"stopped by {name} at epoch {self.epoch + 1}, step {self.step}; resume state saved to "
            f"{self.state_path}; re-run the same command to continue",
            signum,
        )

    def _end_epoch(self, seconds: float, steps: int) -> None:
        for sched in self.schedulers.values():
            sched.step()
        row = {"epoch": self.epoch + 1, "steps": steps, "seconds": round(seconds, 3)}
        row.update({f"loss_{k}": v / max(steps, 1) for k, v in self.sums.items()})
        row.update({f"lr_{k}": opt.param_groups[0]["lr"] for k, opt in self.optimizers.items()})
        self.rows.append(row)
        self.epoch, self.step, self.sums, self.epoch_seconds = self.epoch + 1, 0, {}, 0.0
        self._save_state(0.0)
        if self.ctx.is_main:
            with atomic_path(self.out_dir / self.task.log_name) as tmp:
                pd.DataFrame(self.rows).to_csv(tmp, index=False)
            log.info("epoch %d/%d: %s", row["epoch"], self.num_epochs, row)

    def _finish(self) -> Path:
        checkpoint_path = self.task.checkpoint
        self._check_finite(str(checkpoint_path), self.num_epochs, self.rows[-1]["steps"] if self.rows else 0)
        if self.ctx.is_main:
            self.task.finish(self)
            self.state_path.unlink(missing_ok=True)
        distributed.barrier(self.ctx)
        return checkpoint_path


__all__ = [
    "EpochBatches",
    "RunControl",
    "TrainOptions",
    "TrainingTask",
    "TrainingDiverged",
    "TrainingError",
    "TrainingInterrupted",
    "build_dataset",
    "remove_stale_temporaries",
    "run_fingerprint",
    "run_task",
    "train",
]
