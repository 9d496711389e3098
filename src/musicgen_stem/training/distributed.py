"""One process or many (torchrun): the same code path. Gloo on CPU, NCCL on GPU.

Collectives here take tensors on any device and run them on the backend's device (CUDA for NCCL),
so callers never think about it. Work done by rank 0 alone (writing a checkpoint, a log line, the
final model) goes through `on_main`, which tells every rank whether it failed: a full disk on
rank 0 stops all ranks with the same error instead of leaving them waiting in the next collective.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from ..errors import MusicGenStemError

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistInfo:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and join the process group
    (also with one process: the collectives then run as with many, e.g. NCCL on one GPU).

    Without torchrun this is a single process. device: "cpu", "cuda" or None (cuda if available).
    """
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    launched = world > 1 or ("MASTER_ADDR" in os.environ and "RANK" in os.environ)  # torchrun
    if launched and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local, dev)


def distributed() -> bool:
    """Whether this process is in a process group (torchrun), even of one process."""
    return dist.is_available() and dist.is_initialized()


def comm_device() -> torch.device:
    """The device collectives run on: the current CUDA device under NCCL, else the CPU."""
    if distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (identity in one process), on `value`'s device (reduced on the backend's)."""
    if not distributed():
        return value
    out = value.detach().to(comm_device(), copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(value.device)


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (identity in one process), on `value`'s device."""
    if not distributed():
        return value
    return all_reduce_sum(value) / dist.get_world_size()


def broadcast_object(obj: T) -> T:
    """Rank 0's `obj` on every rank (picklable objects; identity in one process)."""
    if not distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=comm_device())
    return box[0]


def on_main(info: DistInfo, fn: Callable[[], T]) -> T | None:
    """Run `fn` on rank 0 only; every rank raises if it failed (no rank left waiting).

    Returns fn's result on rank 0, None elsewhere.
    """
    result, error = None, None
    if info.is_main:
        try:
            result = fn()
        except Exception as e:  # re-raised below, after telling the other ranks
            error = e
    message = broadcast_object(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    if message is not None:
        raise MusicGenStemError(f"rank 0 failed, stopping this rank too: {message}")
    return result


def wrap_model(model: nn.Module, info: DistInfo, fsdp: bool, units: Iterable[nn.Module] = ()) -> nn.Module:
    """The module to run forward/backward on: `model` itself without a process group; under
    torchrun DistributedDataParallel, or with `fsdp` the model sharded in place by FSDP2
    (`fully_shard` on each of `units`, e.g. the transformer blocks, then on the whole model)."""
    if not distributed():
        return model
    if fsdp:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(info.device.type, (info.world_size,))
        for unit in units:
            fully_shard(unit, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def reshard(model: nn.Module) -> None:
    """FSDP: every unit of `model` back to its shards (a forward without backward, e.g. a
    validation, leaves the root's parameters gathered). Nothing to do for other models."""
    from torch.distributed.fsdp import FSDPModule

    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
