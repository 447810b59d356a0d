"""Samplers that split data across data-parallel ranks."""

from __future__ import annotations

from collections.abc import Iterator

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
