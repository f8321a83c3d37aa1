"""Process groups for `torchrun` (NCCL on GPUs, gloo on CPU) and the resumable sampler."""

from __future__ import annotations

import os
from typing import Iterator

import torch
import torch.distributed as dist


def init_distributed(device: str) -> tuple[int, int, int]:
    """Join the process group `torchrun` describes (env WORLD_SIZE > 1); (rank, world, local_rank)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        if device == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), local_rank


def is_rank_zero() -> bool:
    """Whether this process is rank 0 (or alone), known before the process group is joined."""
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    """Wait for every process (no-op without a process group)."""
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes in place (no-op without a process group)."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


class ResumableInfiniteSampler(torch.utils.data.Sampler):
    """An endless stream of (sample index, augmentation seed) for one rank.

    The global stream is epoch after epoch of a permutation drawn from ``(seed, epoch)``; rank r
    takes every world-th element from position r. The augmentation seed of an element is a
    function of (seed, its global position), so a run restarted at ``start`` (elements already
    consumed by this rank) sees exactly what an uninterrupted run would have.
    """

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world: int = 1, start: int = 0):
        self.size, self.seed, self.rank, self.world, self.start = size, seed, rank, world, start

    def _perm(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=g).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.rank + self.start * self.world
        epoch, cached = -1, []
        while True:
            e, offset = divmod(position, self.size)
            if e != epoch:
                epoch, cached = e, self._perm(e)
            yield cached[offset], (self.seed * 2_147_483_647 + position) % (2**63)
            position += self.world

    def __len__(self) -> int:  # an endless sampler has no meaningful length
        return 2**62
