"""Data-parallel GRPO under torchrun: which process this is, and the few collectives the trainer needs.

    torchrun --standalone --nproc_per_node N -m smart_core -- train --profile P --run R [key=value ...]

Each process samples, decodes, renders and scores its share of the step's prompt groups (a group
never straddles processes); the policy is wrapped in DistributedDataParallel, and each process's loss
is scaled so that DDP's gradient average equals the single-process gradient of the whole batch
(`grpo_loss` takes the global normalisers). Process 0 alone writes logs, checkpoints, media and
meta.json. Without torchrun (no WORLD_SIZE in the environment) everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def world_from_env() -> World:
    """The process's place as torchrun describes it (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")),
                 int(os.environ.get("LOCAL_WORLD_SIZE", str(size))))


def init(world: World, device: torch.device) -> None:
    """Join the process group once: NCCL when this process drives a GPU, gloo on CPU."""
    if world.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)  # collectives of Python objects use the current device
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def device_for(world: World, device: torch.device) -> torch.device:
    """One GPU per local rank under torchrun (cuda -> cuda:LOCAL_RANK); CPU stays CPU."""
    if world.distributed and device.type == "cuda" and device.index is None:
        return torch.device("cuda", world.local_rank)
    return device


def my_groups(n_groups: int, world: World) -> range:
    """The contiguous block of prompt groups this process samples (process r: block r)."""
    if n_groups % world.size:
        raise ConfigError(f"prompts_per_step={n_groups} groups cannot be split evenly over {world.size} processes; "
                          f"use a multiple of {world.size}")
    per = n_groups // world.size
    return range(world.rank * per, (world.rank + 1) * per)


def all_sum(value: float | torch.Tensor, world: World, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float64, device=device).clone()
    if world.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_max(value: int, world: World, device: torch.device) -> int:
    t = torch.tensor(value, dtype=torch.int64, device=device)
    if world.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t)


def gather_to_main(obj, world: World) -> list | None:
    """Every process's `obj`, in rank order, on process 0 (None elsewhere)."""
    if not world.distributed:
        return [obj]
    out = [None] * world.size if world.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
