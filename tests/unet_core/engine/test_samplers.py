"""EpochSampler: fixed-length epochs of shuffled passes, split across ranks."""

from __future__ import annotations

from collections import Counter

import pytest

from unet_core.engine.samplers import EpochSampler


@pytest.mark.parametrize(("length", "samples", "world"), [(6, 200, 1), (7, 30, 2), (12, 5, 3)])
def test_every_item_once_per_pass_and_ranks_share_the_epoch(
    length: int, samples: int, world: int
) -> None:
    ranks = [EpochSampler(length, samples, rank, world, seed=3) for rank in range(world)]
    for sampler in ranks:
        sampler.set_epoch(4)
    drawn = [list(s) for s in ranks]
    assert all(len(d) == len(s) == samples for d, s in zip(drawn, ranks, strict=True))
    # The epoch in drawing order: rank r took positions r, r + world, ...
    order = [drawn[i % world][i // world] for i in range(samples * world)]
    for start in range(0, len(order), length):
        chunk = order[start : start + length]
        assert len(set(chunk)) == len(chunk), "a pass repeats no item"
    full_passes = len(order) // length
    counts = Counter(order)
    assert min(counts.values()) >= full_passes and set(counts) <= set(range(length))


def test_order_depends_on_seed_and_epoch_only() -> None:
    a, b = EpochSampler(10, 40, seed=1), EpochSampler(10, 40, seed=1)
    assert list(a) == list(b)  # a resumed run draws the same epoch
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert list(EpochSampler(10, 40, seed=2)) != first


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="world_size"):
        EpochSampler(5, 5, rank=2, world_size=2)
    with pytest.raises(ValueError, match=">= 1"):
        EpochSampler(0, 5)
