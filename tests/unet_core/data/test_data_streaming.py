"""PatchStream: per-rank seeded patches, foreground oversampling, padding, bounded cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from unet_core.data import PatchStream, PreparedStore, write_case, write_manifest
from unet_core.data.streaming import CaseCache


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nine small 3D cases of different shapes, one label-2 blob each, one tiny case."""
    root = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(0)
    cases = []
    shapes = [(12, 14, 16), (16, 12, 10), (20, 18, 12), (9, 9, 9)] * 2 + [(5, 6, 7)]
    for k, shape in enumerate(shapes):
        image = rng.normal(100, 20, (1, *shape)).astype(np.float32)
        mask = np.zeros(shape, np.uint8)
        corner = [int(rng.integers(0, s - 2)) for s in shape]
        mask[tuple(slice(c, c + 2) for c in corner)] = 2  # 8 foreground voxels
        cases.append(write_case(root, f"v{k}", "train", image, mask, chunks=(4, 4, 4)))
    write_manifest(root, cases, chunks=(4, 4, 4))
    return root


def _patches(stream: PatchStream) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(stream)


def test_patches_depend_only_on_seed_epoch_and_rank(volumes: Path) -> None:
    def make(rank: int = 0, seed: int = 0) -> PatchStream:
        return PatchStream(str(volumes), "train", (8, 8, 8), samples=6, seed=seed, rank=rank)

    first = _patches(make())
    again = _patches(make())
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    other_rank = _patches(make(rank=1))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other_rank))
    stream = make()
    stream.set_epoch(1)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, _patches(stream)))
    for image, mask in first:
        assert image.shape == (1, 8, 8, 8) and image.dtype == torch.float32
        assert mask.shape == (8, 8, 8) and mask.dtype == torch.int64


def test_foreground_fraction_one_centres_every_patch_on_foreground(volumes: Path) -> None:
    stream = PatchStream(str(volumes), "train", (6, 6, 6), samples=20, foreground_fraction=1.0)
    assert all((mask == 2).any() for _, mask in stream)
    never = PatchStream(str(volumes), "train", (4, 4, 4), samples=40, foreground_fraction=0.0)
    hits = sum(bool((mask == 2).any()) for _, mask in never)
    assert hits < 20  # random 4^3 patches seldom meet an 8-voxel blob


def test_cases_smaller_than_the_patch_are_padded_evenly(volumes: Path) -> None:
    stream = PatchStream(str(volumes), "train", (24, 24, 24), samples=12)
    store = PreparedStore(volumes)
    for image, mask in stream:
        assert image.shape == (1, 24, 24, 24) and mask.shape == (24, 24, 24)
    # The 5x6x7 case padded to 24^3: its foreground is all there, padding is background.
    stream.cases = [store.manifest.case("v8")]
    image, mask = next(iter(stream))
    assert int((mask == 2).sum()) == 8
    assert float(image[0, 0, 0, 0]) == 0.0  # padding = train mean after normalisation


def test_loader_workers_share_the_samples(volumes: Path) -> None:
    stream = PatchStream(str(volumes), "train", (8, 8, 8), samples=7)
    # Spawned, as the training loaders do: a forked worker inherits zarr's event loop dead.
    loader = DataLoader(stream, batch_size=2, num_workers=2, multiprocessing_context="spawn")
    batches = list(loader)
    assert sum(len(b[0]) for b in batches) == 7


def test_case_cache_stays_within_its_budget(volumes: Path) -> None:
    store = PreparedStore(volumes)
    cases = store.manifest.cases
    budget = 2 * (20 * 18 * 12 * 5)  # two of the largest cases (float32 image + uint8 mask)
    cache = CaseCache(store, budget * 4)  # cases up to a quarter of the budget are held
    window = (slice(0, 4),) * 3
    for case in cases * 3:
        image, mask = cache.read(case, window)
        assert image.shape[1:] == mask.shape
        assert cache.bytes <= cache.max_bytes
    small = CaseCache(store, 4 * 1000)  # every case is above a quarter: nothing held
    for case in cases:
        small.read(case, window)
    assert small.bytes == 0 and not small.held


def test_bad_arguments_fail_clearly(volumes: Path) -> None:
    with pytest.raises(ValueError, match="patch_size"):
        PatchStream(str(volumes), "train", (8, 8), samples=1)
    with pytest.raises(ValueError, match="foreground_fraction"):
        PatchStream(str(volumes), "train", (8, 8, 8), samples=1, foreground_fraction=2)
    with pytest.raises(KeyError, match="train"):
        PatchStream(str(volumes), "val", (8, 8, 8), samples=1)


def test_default_epoch_is_one_patch_per_case_over_all_ranks(volumes: Path) -> None:
    ranks = [PatchStream(str(volumes), "train", (8, 8, 8), rank=r, world_size=2) for r in (0, 1)]
    assert [len(s) for s in ranks] == [5, 5]  # 9 cases over 2 ranks, rounded up
    assert len(list(ranks[0])) == 5
