"""Deterministic train/val/test splits, optionally keeping groups (patients, slides) whole."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SPLIT_NAMES = ("train", "val", "test")


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    frac = np.asarray(fractions, dtype=np.float64)
    if frac.shape != (3,) or (frac < 0).any() or not np.isclose(frac.sum(), 1.0):
        raise ValueError(
            f"fractions must be three non-negative numbers (train, val, test) summing to 1, "
            f"got {tuple(fractions)}"
        )
    return frac


def _targets(n: int, frac: np.ndarray) -> np.ndarray:
    """Counts per split that sum to ``n``; val and test are rounded, train takes the rest."""
    val, test = round(n * frac[1]), round(n * frac[2])
    return np.array([n - val - test, val, test])


def split_indices(
    n: int,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    groups: Sequence[object] | None = None,
) -> dict[str, np.ndarray]:
    """Split ``range(n)`` into train/val/test, deterministically for a seed.

    With ``groups``, whole groups are assigned: shuffled by the seed, each goes to the
    split furthest below its target count, so the sizes approximate ``fractions`` while
    no group straddles two splits.

    Args:
        n: number of samples.
        fractions: (train, val, test), non-negative, summing to 1.
        seed: same seed -> same split.
        groups: optional group label per sample (length ``n``); any hashable values.

    Returns:
        ``{"train": idx, "val": idx, "test": idx}``, sorted int64 index arrays that
        partition ``range(n)``.
    """
    frac = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    target = _targets(n, frac)
    if groups is None:
        order = rng.permutation(n)
        bounds = np.cumsum(target)[:-1]
        parts = np.split(order, bounds)
        return {
            name: np.sort(part).astype(np.int64)
            for name, part in zip(SPLIT_NAMES, parts, strict=True)
        }

    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} entries for n={n} samples; give one per sample")
    # np.unique sorts, so the group order before shuffling does not depend on input order.
    labels, inverse = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(labels))
    assigned = np.empty(len(labels), dtype=np.int64)
    counts = np.zeros(3, dtype=np.int64)
    for group in rng.permutation(len(labels)):
        # Deficit relative to the target; empty-target splits never receive a group.
        deficit = np.where(target > 0, (target - counts) / np.maximum(target, 1), -np.inf)
        choice = int(np.argmax(deficit))
        assigned[group] = choice
        counts[choice] += sizes[group]
    return {
        name: np.flatnonzero(assigned[inverse] == k).astype(np.int64)
        for k, name in enumerate(SPLIT_NAMES)
    }
