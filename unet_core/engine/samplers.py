"""Samplers that split data across data-parallel ranks."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ShardSampler(Sampler[int]):
    """Rank `rank` of `world_size` takes indices rank, rank+world_size, ... in order.

    Unlike `DistributedSampler` it never pads with repeated samples, so metric sums
    all-reduced across ranks count every evaluation image exactly once.
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class EpochSampler(Sampler[int]):
    """Rank `rank`'s `num_samples` indices of one epoch, for epochs of a fixed length.

    The epoch is shuffled passes over the `length` items, concatenated and cut to
    `num_samples * world_size` (every item once per pass, as `DistributedSampler` draws
    one pass), then dealt to the ranks in turn. An epoch longer than a pass lets fixed
    per-epoch costs (validation, checkpoint) amortise on small data. `set_epoch`
    reshuffles; the order depends only on (seed, epoch), so a resumed run and every
    rank agree.
    """

    def __init__(
        self, length: int, num_samples: int, rank: int = 0, world_size: int = 1, seed: int = 0
    ) -> None:
        if length < 1 or num_samples < 1:
            raise ValueError(f"length {length} and num_samples {num_samples} must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.length, self.num_samples = length, num_samples
        self.rank, self.world_size, self.seed, self.epoch = rank, world_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        total = self.num_samples * self.world_size
        passes = [
            torch.randperm(self.length, generator=generator)
            for _ in range(-(-total // self.length))
        ]
        order = torch.cat(passes)[:total]
        return iter(order[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return self.num_samples
