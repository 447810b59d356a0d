"""PatchDataset: shapes, padding, foreground oversampling, determinism."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from unet_core.data import PatchDataset


def _base(shape: tuple[int, ...], n: int = 4) -> TensorDataset:
    images = torch.arange(n * torch.Size(shape).numel(), dtype=torch.float32).view(n, 1, *shape)
    masks = torch.zeros((n, *shape), dtype=torch.long)
    masks[(slice(None), *[slice(s - 3, s - 1) for s in shape])] = 1  # small corner object
    return TensorDataset(images, masks)


@pytest.mark.parametrize(("shape", "patch"), [((40, 50), (16, 24)), ((20, 24, 24), (8, 12, 12))])
def test_patches_have_the_patch_shape_and_come_from_the_item(shape: tuple, patch: tuple) -> None:
    base = _base(shape)
    patches = PatchDataset(base, patch, seed=1)
    assert len(patches) == len(base)
    for i in range(len(patches)):
        image, mask = patches[i]
        assert image.shape == (1, *patch) and mask.shape == patch
        assert mask.dtype == torch.long
        first = int(image.flatten()[0])
        assert base[i][0].flatten().tolist().count(first) == 1  # values of item i


def test_smaller_items_are_padded_with_background() -> None:
    patches = PatchDataset(_base((6, 7)), (10, 12), foreground_prob=0.0)
    image, mask = patches[0]
    assert image.shape == (1, 10, 12) and mask.shape == (10, 12)
    assert int(mask.sum()) == 4 and float(image[0, 0, 0]) == 0.0  # object kept, zero border


def test_foreground_prob_one_always_hits_the_object() -> None:
    patches = PatchDataset(_base((64, 64)), (16, 16), foreground_prob=1.0, samples_per_epoch=20)
    assert all(int(patches[i][1].sum()) > 0 for i in range(20))
    uniform = PatchDataset(_base((64, 64)), (16, 16), foreground_prob=0.0, samples_per_epoch=20)
    assert sum(int(uniform[i][1].sum()) > 0 for i in range(20)) < 10


def test_patches_are_deterministic_per_seed_and_epoch() -> None:
    patches = PatchDataset(_base((40, 40)), (8, 8), samples_per_epoch=6, seed=3)
    first = [patches[i][0] for i in range(6)]
    assert all(torch.equal(a, patches[i][0]) for i, a in enumerate(first))
    patches.set_epoch(1)
    assert not all(torch.equal(a, patches[i][0]) for i, a in enumerate(first))
    assert len(patches) == 6


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="foreground_prob"):
        PatchDataset(_base((8, 8)), (4, 4), foreground_prob=2.0)
    with pytest.raises(ValueError, match="3 axes"):
        PatchDataset(_base((8, 8)), (4, 4, 4))[0]
