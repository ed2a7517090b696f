"""One process or many: the same code runs alone or under ``torchrun`` (DDP).

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; when ``WORLD_SIZE > 1`` a process
group is created (``nccl`` on CUDA, ``gloo`` on CPU). Every helper here is a no-op for a single
process, so the engine never branches on "am I distributed" except through :class:`Runtime`.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from ..runtime import resolve_device


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: its rank, the world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, shows progress and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def init_runtime(device: str = "auto", timeout_s: float = 1800.0) -> Runtime:
    """Pick the device and, under ``torchrun``, join the process group.

    ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda``. Under torchrun each process
    uses ``cuda:LOCAL_RANK``.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"backend": backend, "timeout": datetime.timedelta(seconds=timeout_s)}
        if dev.type == "cuda":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    return Runtime(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        if runtime.device.type == "cuda":
            dist.barrier(device_ids=[runtime.device.index])
        else:
            dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """Sum of ``tensor`` over ranks (in place; returned for chaining)."""
    if runtime.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    if runtime.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def reduce_means(values: dict[str, float], runtime: Runtime) -> dict[str, float]:
    """The mean of each named value over ranks (every rank gets the result)."""
    if not runtime.distributed or not values:
        return dict(values)
    names = sorted(values)
    t = torch.tensor([float(values[n]) for n in names], dtype=torch.float64, device=runtime.device)
    all_reduce_sum(t, runtime)
    return {n: float(v) / runtime.world_size for n, v in zip(names, t.tolist())}


def gather_objects(obj: Any, runtime: Runtime) -> list[Any]:
    """Every rank's ``obj``, in rank order (a list of one for a single process)."""
    if not runtime.distributed:
        return [obj]
    out: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, runtime: Runtime, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not runtime.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class _AllGatherWithGrad(torch.autograd.Function):
    """``cat`` of every rank's tensor; the backward pass sums the gradient over ranks and returns
    this rank's slice (all-reduce, which every backend has, where reduce-scatter is NCCL-only)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.rows = rank, tensor.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows], None, None


@dataclass(frozen=True)
class FeatureGather:
    """``mvlt.model.objectives.Gather`` over the process group: contrastive losses see the global
    batch, and gradients reach the process whose features they are. Tensors must have the same
    shape on every rank. Identity for one process."""

    runtime: Runtime

    @property
    def rank(self) -> int:
        return self.runtime.rank

    @property
    def world_size(self) -> int:
        return self.runtime.world_size

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        if not self.runtime.distributed:
            return tensor
        return _AllGatherWithGrad.apply(tensor, self.rank, self.world_size)
