"""Data-parallel training across processes (``torchrun``), one process per GPU.

``torchrun --nproc-per-node N -m animbench train ...`` starts N copies of the trainer; each
reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment, joins the process group
(NCCL on GPUs, gloo on CPUs) and trains a :class:`~torch.nn.parallel.DistributedDataParallel`
copy of the model on its share of every global batch. Without those variables nothing here
does anything, so the same code is the single-process trainer.

Batch norm: FOMM and MRAA trained with synchronised batch norm (``SynchronizedBatchNorm2d``
over the GPUs of a ``DataParallelWithCallback``), so their batch norms normalise over the whole
global batch here too: :class:`torch.nn.SyncBatchNorm` on CUDA, :class:`GlobalBatchNorm` (same
statistics, computed with a differentiable all-reduce) on CPU, where torch's version refuses to
run. The replacement layers keep the parameter and buffer names, so checkpoints do not change.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce

# The autograd-aware all-reduce has no differentiable successor yet; its deprecation notice
# would otherwise print at every batch norm call.
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_reduce is deprecated")

@dataclass(frozen=True)
class Context:
    """This process's place in the job (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context_from_env() -> Context:
    """The process's rank and world size as torchrun sets them in the environment."""
    return Context(
        rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


@contextlib.contextmanager
def process_group(device: torch.device, ctx: Context) -> Iterator[Context]:
    """Join the job's process group for the duration of the block (no-op for one process)."""
    if not ctx.enabled or dist.is_initialized():
        yield ctx
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(minutes=30))
    try:
        yield ctx
    finally:
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Sum ``values`` over all processes (returned unchanged for one process)."""
    if not ctx.enabled:
        return values
    # NCCL reduces GPU tensors only; small CPU flags travel through the current GPU.
    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else values.device
    reduced = values.to(on, copy=True)
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.to(values.device)


def gather_objects(obj: Any, ctx: Context) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: Context) -> None:
    if ctx.enabled:
        dist.barrier()


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics cover the global batch of all processes.

    Each process contributes per-channel sums, sums of squares and counts to one differentiable
    all-reduce (its backward sums the gradients of every process, as synchronised batch norm
    requires). Outside a process group, or in eval mode, it is plain batch norm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {input.dim()}D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        x = input.float()
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), count])
        stats = differentiable_all_reduce(stats, op=dist.ReduceOp.SUM)
        channels = x.shape[1]
        total = stats[-1]
        mean = stats[:channels] / total
        var = (stats[channels : 2 * channels] / total - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (
                    1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                )
                unbiased = var * (total / (total - 1).clamp_min(1))
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.detach())
        shape = [1, channels] + [1] * (input.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)


def _to_global_batchnorm(module: nn.Module) -> nn.Module:
    result = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        result = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        result.load_state_dict(module.state_dict())
        result.train(module.training)
        tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        if tensors:
            result.to(tensors[0].device)
    for name, child in module.named_children():
        result.add_module(name, _to_global_batchnorm(child))
    return result


def synchronise_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every batch norm of ``model`` by its synchronised form, in place."""
    for name, child in list(model.named_children()):
        if device.type == "cuda":
            converted = nn.SyncBatchNorm.convert_sync_batchnorm(child)
        else:
            converted = _to_global_batchnorm(child)
        if converted is not child:
            setattr(model, name, converted)
    return model


def wants_sync_batchnorm(config: dict[str, Any], model: nn.Module) -> bool:
    """``train_params.sync_batchnorm`` if set, else whether the method's reference synchronised
    it (the model class's ``sync_batchnorm``)."""
    explicit = config["train_params"].get("sync_batchnorm")
    return bool(explicit) if explicit is not None else bool(getattr(model, "sync_batchnorm", False))


def wrap(model: nn.Module, device: torch.device, ctx: Context) -> nn.Module:
    """``model`` inside DistributedDataParallel when there are several processes.

    ``find_unused_parameters``: some methods switch sub-networks on by epoch (TPSMM's background
    predictor), so the set of parameters that receive gradients can change between steps.
    """
    if not ctx.enabled:
        return model
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True,
    )


__all__ = [
    "Context",
    "GlobalBatchNorm",
    "all_reduce_sum",
    "barrier",
    "context_from_env",
    "gather_objects",
    "process_group",
    "synchronise_batchnorm",
    "wants_sync_batchnorm",
    "wrap",
]
