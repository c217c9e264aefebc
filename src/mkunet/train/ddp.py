"""Distributed data parallel (DDP) under ``torchrun``: the process group, the device, and reductions.

Without ``torchrun`` (no ``RANK`` / ``WORLD_SIZE`` in the environment, or a world of 1) every
function is a no-op on a single process: :class:`Dist` with rank 0 of 1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["Dist", "setup_distributed", "all_reduce_sum", "barrier"]


@dataclass
class Dist:
    """This process in the process group: rank, world size, local rank (the GPU index on its node), and
    whether :func:`setup_distributed` initialised the group (then :func:`mkunet.train.train` destroys it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def active(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes the run folder."""
        return self.rank == 0


def setup_distributed(device_request: str) -> tuple[Dist, torch.device]:
    """Init the process group under torchrun (env RANK / WORLD_SIZE); pick the device."""
    dist = Dist()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if "RANK" in os.environ and world > 1:
        dist.rank, dist.world_size = int(os.environ["RANK"]), world
        dist.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_request == "auto":
        device = torch.device(f"cuda:{dist.local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_request)
        if device.type == "cuda" and device.index is None:
            device = torch.device(f"cuda:{dist.local_rank}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`device` = {device_request!r} but CUDA is not available; use --device cpu or auto.")
    if dist.active and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend=backend)
        dist.initialised_here = True
    return dist, device


def all_reduce_sum(values: Sequence[float], dist: Dist) -> list[float]:
    """``values`` summed over every process (float64; the values themselves on a single process)."""
    if not dist.active:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    backend = torch.distributed.get_backend()
    if backend == "nccl":
        t = t.cuda()
    torch.distributed.all_reduce(t)
    return [float(v) for v in t.cpu()]


def barrier(dist: Dist) -> None:
    """Wait for every process (nothing on a single process)."""
    if dist.active:
        torch.distributed.barrier()
