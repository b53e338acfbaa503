"""Which torch device a command runs its network on.

Every command that runs a network takes ``--device`` with the default ``auto``: the GPU when
CUDA is present, else the CPU. Under ``torchrun`` each process takes the GPU of its
``LOCAL_RANK``, so one process drives one GPU.
"""

from __future__ import annotations

import os

import torch

#: The value of ``--device`` every command defaults to.
DEFAULT_DEVICE = "auto"


class DeviceError(ValueError):
    """The requested device does not exist on this machine."""


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str | torch.device | None = DEFAULT_DEVICE) -> torch.device:
    """Turn ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` into a usable :class:`torch.device`.

    ``auto`` picks ``cuda:LOCAL_RANK`` when CUDA is available and ``cpu`` otherwise; plain
    ``cuda`` also takes the process's ``LOCAL_RANK`` (0 outside torchrun). A device that is not
    there raises :class:`DeviceError` with one line saying what to pass instead.
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or DEFAULT_DEVICE).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise DeviceError(
            f"unknown device {name!r}; pass --device auto, cpu, cuda or cuda:N"
        ) from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {name}: CUDA is not available on this machine "
                f"(torch {torch.__version__}); pass --device cpu or auto"
            )
        index = _local_rank() if device.index is None else device.index
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(
                f"--device {name}: GPU {index} requested but this machine has {count}; "
                "pass a smaller index or launch fewer torchrun processes per node"
            )
        device = torch.device("cuda", index)
    elif device.type != "cpu":
        raise DeviceError(f"unsupported device {name!r}; pass --device auto, cpu, cuda or cuda:N")
    return device


def describe(device: torch.device) -> str:
    """Human-readable device name for run.json and reports, e.g. ``cuda:0 (NVIDIA H100)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
