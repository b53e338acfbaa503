"""Saving and loading checkpoints in the reference layout.

A checkpoint is a dict with one state_dict per sub-network under the reference key names
(FOMM: ``generator``, ``kp_detector``), ``optimizer_{name}`` per optimizer and ``epoch``, so the
files written here and the released checkpoints of the reference implementations load through
the same function. animbench adds an ``animbench`` entry with the method config and provenance.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from data_prep.io import atomic_path
from methods.base import AnimationModel


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or does not fit the model."""


_log = logging.getLogger(__name__)


def serialize(payload: dict[str, Any]) -> bytes:
    """``payload`` as ``torch.save`` bytes, identical for identical payloads.

    Saving by path would name the zip's inner folder after the (random) temporary file, so two
    saves of the same weights would differ; a buffer always uses the same inner name.
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def save(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (a crash never leaves half a file) and byte-reproducibly.

    A full disk or another OS failure raises :class:`CheckpointError` naming ``path``.
    """
    path = Path(path)
    data = serialize(payload)
    try:
        with atomic_path(path) as tmp:
            _write_bytes(tmp, data)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise CheckpointError(
                f"cannot write checkpoint {path}: disk full ({len(data) / 2**20:.1f} MiB needed); "
                "free space on that disk and re-run"
            ) from err
        raise CheckpointError(f"cannot write checkpoint {path}: {err.strerror or err}") from err


def stale_temporaries(folder: str | Path, names: tuple[str, ...] | None = None) -> list[Path]:
    """Hidden ``.<name>.*.tmp`` files :func:`data_prep.io.atomic_path` left in ``folder`` when a
    process was killed mid-write (they are never renamed into place); only those of ``names``
    when given (another job may be writing its own files in the same folder)."""
    found = (p for p in Path(folder).glob(".*.tmp") if p.is_file())
    if names is not None:
        found = (p for p in found if any(p.name.startswith(f".{name}.") for name in names))
    return sorted(found)


def read(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict on the CPU, turning low-level failures into a clear error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        # weights_only: tensors and plain data only (what our checkpoints, resume states and the
        # released ones hold). Unpickling anything else could run code from the file.
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # A global (a class or function) in the pickle is what could run code; other
        # unpickling errors are damaged bytes.
        found = re.search(r"(?:Unsupported global|unsupported GLOBAL):? ([\w.]+)", str(err))
        if found is None:
            raise CheckpointError(
                f"checkpoint {path} is truncated or corrupt (not a valid pickle); delete it and "
                "re-run training, or pass the right file"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} holds Python objects ({found.group(1)}), not only tensors and plain "
            "data: refused unread, since loading it could run code; use a checkpoint from a source "
            "you trust"
        ) from None
    except Exception as err:  # noqa: BLE001 - any failure to unpickle means "not a checkpoint"
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(err).__name__}: {detail[:200]}); "
            "delete it and re-run training, or pass the right file"
        ) from err
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a dict of state_dicts")
    return payload


def model_state(model: AnimationModel) -> dict[str, Any]:
    return {key: getattr(model, key).state_dict() for key in model.checkpoint_keys}


#: Entries of training bookkeeping that inference ignores quietly (logged at INFO).
_BOOKKEEPING = ("epoch", "animbench", "torch_rng", "rng", "log", "fingerprint", "step", "scaler",
                "epoch_sums", "epoch_seconds", "world_size")


def _state_dict_entry(payload: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    state = payload[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: entry {key!r} is a {type(state).__name__}, not a state_dict")
    return state


def _check_keys(module: torch.nn.Module, state: dict[str, Any], key: str, source: str) -> None:
    """Name missing and unexpected parameter names (the first few of each) before loading."""
    expected, found = set(module.state_dict()), set(state)
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        def few(names: list[str]) -> str:
            return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {few(unexpected)}")
        raise CheckpointError(
            f"{source}: {key} does not match the model config ({'; '.join(parts)}); "
            "is it a checkpoint of another method, or a truncated one?"
        )


def load_model_state(model: AnimationModel, payload: dict[str, Any], source: str = "checkpoint") -> None:
    """Load every sub-network of ``model`` with ``strict=True`` from ``payload``.

    An ``avd_network`` entry (MRAA/TPSMM releases, ``animbench train-avd``) is loaded into
    ``model.avd_network``. Every other entry that is not loaded (a ``discriminator``,
    optimizers, ...) is named in one log line: WARNING when it holds a network, INFO when it
    is only optimizer or training bookkeeping.
    """
    from methods.models.avd import load_avd_network

    missing = [key for key in model.checkpoint_keys if key not in payload]
    if missing:
        raise CheckpointError(
            f"{source} lacks {missing}; it holds {sorted(k for k in payload if not k.startswith('optimizer'))}"
        )
    for key in model.checkpoint_keys:
        state = _state_dict_entry(payload, key, source)
        module = getattr(model, key)
        _check_keys(module, state, key, source)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"{source}: {key} does not match the model config: {err}") from err
    loaded = set(model.checkpoint_keys)
    if "avd_network" in payload and "avd_network" not in loaded:
        try:
            model.avd_network = load_avd_network(_state_dict_entry(payload, "avd_network", source), source)
        except ValueError as err:
            raise CheckpointError(str(err)) from err
        loaded.add("avd_network")
    ignored = sorted(k for k in payload if k not in loaded)
    if ignored:
        quiet = all(k in _BOOKKEEPING or k.startswith(("optimizer_", "scheduler_")) for k in ignored)
        _log.log(logging.INFO if quiet else logging.WARNING,
                 "%s: ignoring checkpoint entries %s (not part of the %s model)",
                 source, ", ".join(ignored), model.config.get("method", type(model).__name__))


def load_model(path: str | Path, config: dict[str, Any] | None = None) -> tuple[AnimationModel, dict[str, Any]]:
    """Build the model described by the checkpoint (or ``config``) and load its weights.

    Released reference checkpoints carry no config: pass the matching method config.
    """
    from methods.registry import build_model

    payload = read(path)
    if config is None:
        config = payload.get("animbench", {}).get("config")
        if config is None:
            raise CheckpointError(f"checkpoint {path} carries no animbench config; pass the method config")
    model = build_model(config, with_losses=False)  # inference needs no loss networks (VGG)
    load_model_state(model, payload, source=str(path))
    model.eval()
    return model, payload
