"""split_indices: determinism, partition, fractions, groups."""

from __future__ import annotations

import numpy as np
import pytest

from unet_core.data import split_indices


def _assert_partition(splits: dict[str, np.ndarray], n: int) -> None:
    assert sorted(splits) == ["test", "train", "val"]
    everything = np.concatenate(list(splits.values()))
    assert np.array_equal(np.sort(everything), np.arange(n))


def test_split_is_a_deterministic_partition_with_the_right_sizes() -> None:
    splits = split_indices(100, (0.7, 0.2, 0.1), seed=5)
    _assert_partition(splits, 100)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [70, 20, 10]
    again = split_indices(100, (0.7, 0.2, 0.1), seed=5)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    other = split_indices(100, (0.7, 0.2, 0.1), seed=6)
    assert not np.array_equal(splits["val"], other["val"])
    assert all(np.all(np.diff(idx) > 0) for idx in splits.values())  # sorted


def test_zero_fraction_gives_an_empty_split() -> None:
    splits = split_indices(10, (0.8, 0.2, 0.0))
    _assert_partition(splits, 10)
    assert len(splits["test"]) == 0 and splits["test"].dtype == np.int64


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.7, 0.2, 0.2), (1.2, -0.1, -0.1)])
def test_bad_fractions_are_refused(fractions: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="summing to 1"):
        split_indices(10, fractions)


def test_groups_never_straddle_splits_and_sizes_are_close() -> None:
    rng = np.random.default_rng(0)
    groups = [f"patient{g}" for g in rng.integers(0, 30, 300)]
    splits = split_indices(300, (0.6, 0.2, 0.2), seed=1, groups=groups)
    _assert_partition(splits, 300)
    members = {k: {groups[i] for i in idx} for k, idx in splits.items()}
    assert not members["train"] & members["val"]
    assert not members["train"] & members["test"]
    assert not members["val"] & members["test"]
    assert abs(len(splits["val"]) - 60) <= 25 and abs(len(splits["test"]) - 60) <= 25
    again = split_indices(300, (0.6, 0.2, 0.2), seed=1, groups=groups)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)


def test_groups_must_match_n() -> None:
    with pytest.raises(ValueError, match="one per sample"):
        split_indices(5, groups=["a", "b"])
