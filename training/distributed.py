"""Multi-process data-parallel training under `torchrun` (DDP): NCCL on GPUs, gloo on CPUs.

`torchrun --nproc_per_node N -m labelserve_tools.cli train ...` sets RANK/WORLD_SIZE/LOCAL_RANK; without them
training is a single process and nothing here does anything. Only rank 0 evaluates, logs and writes checkpoints;
the other ranks wait at a barrier and receive rank 0's early-stop decision.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["DistributedContext"]

logger = logging.getLogger(__name__)


@dataclass
class DistributedContext:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> DistributedContext:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))

    def device(self, requested: torch.device) -> torch.device:
        """One GPU per process (by local rank) when training on CUDA."""
        if self.enabled and requested.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return requested

    def start(self, device: torch.device) -> None:
        if not self.enabled or dist.is_initialized():
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=self.rank, world_size=self.world_size)
        logger.info("rank %d/%d joined the %s process group", self.rank, self.world_size, backend)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        if not self.enabled:
            return model
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_flag(self, flag: bool, device: torch.device) -> bool:
        """Rank 0's `flag` on every rank (for early stopping)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1 if flag else 0], device=device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def stop(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
