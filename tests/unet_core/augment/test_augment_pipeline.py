"""BatchAugmenter: determinism, layouts, dtypes, devices, input checks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from unet_core.augment import AugmentConfig, BatchAugmenter

STRONG = AugmentConfig.from_strength(1.0)


def test_same_seed_same_output_and_different_seeds_differ(
    h: SimpleNamespace, spatial_dims: int
) -> None:
    images, masks = h.batch(spatial_dims)
    aug = BatchAugmenter(STRONG, spatial_dims)
    first = aug(images, masks, h.seeded(7))
    second = aug(images, masks, h.seeded(7))
    other = aug(images, masks, h.seeded(8))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])


def test_global_rng_is_used_without_a_generator(h: SimpleNamespace) -> None:
    images, masks = h.batch(2)
    aug = BatchAugmenter(STRONG, 2)
    torch.manual_seed(3)
    first = aug(images, masks)
    torch.manual_seed(3)
    assert torch.equal(aug(images, masks)[0], first[0])


def test_generator_advances_so_batches_differ(h: SimpleNamespace) -> None:
    images, masks = h.batch(2)
    aug, gen = BatchAugmenter(STRONG, 2), h.seeded(0)
    assert not torch.equal(aug(images, masks, gen)[0], aug(images, masks, gen)[0])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64, torch.bool])
@pytest.mark.parametrize("channel_axis", [False, True])
def test_mask_layout_and_dtype_are_kept(
    h: SimpleNamespace, spatial_dims: int, dtype: torch.dtype, channel_axis: bool
) -> None:
    images, masks = h.batch(spatial_dims, labels=(0, 1))
    masks = masks.to(dtype)
    if channel_axis:
        masks = masks.unsqueeze(1)
    out_images, out_masks = BatchAugmenter(STRONG, spatial_dims)(images, masks, h.seeded())
    assert out_images.shape == images.shape and out_images.dtype == images.dtype
    assert out_masks.shape == masks.shape and out_masks.dtype == dtype
    assert set(out_masks.unique().tolist()) <= {0, 1}


def test_inputs_are_not_modified(h: SimpleNamespace) -> None:
    images, masks = h.batch(3)
    copies = images.clone(), masks.clone()
    BatchAugmenter(STRONG, 3)(images, masks, h.seeded())
    assert torch.equal(images, copies[0]) and torch.equal(masks, copies[1])


def test_identity_config_returns_the_inputs(h: SimpleNamespace) -> None:
    images, masks = h.batch(2)
    out = BatchAugmenter(AugmentConfig.from_strength(0.0), 2)(images, masks, h.seeded())
    assert out[0] is images and out[1] is masks


@pytest.mark.parametrize(
    ("images", "masks", "message"),
    [
        (torch.rand(2, 1, 8, 8), torch.rand(2, 8, 8), "integer labels"),
        (torch.rand(2, 1, 8, 8), torch.zeros(2, 8, 9, dtype=torch.long), "matching images"),
        (torch.rand(2, 1, 8, 8), torch.zeros(2, 2, 8, 8, dtype=torch.long), "matching images"),
        (torch.rand(2, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long), "2 spatial dims"),
        (
            torch.zeros(2, 1, 8, 8, dtype=torch.long),
            torch.zeros(2, 8, 8, dtype=torch.long),
            "float",
        ),
    ],
)
def test_bad_inputs_fail_with_a_clear_message(
    images: torch.Tensor, masks: torch.Tensor, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        BatchAugmenter(STRONG, 2)(images, masks)


def test_spatial_dims_is_checked() -> None:
    with pytest.raises(ValueError, match="2 or 3"):
        BatchAugmenter(STRONG, 4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_stay_on_device_and_are_deterministic(
    h: SimpleNamespace, spatial_dims: int
) -> None:
    images, masks = (t.cuda() for t in h.batch(spatial_dims))
    aug = BatchAugmenter(STRONG, spatial_dims)
    first, second = aug(images, masks, h.seeded(1)), aug(images, masks, h.seeded(1))
    assert first[0].is_cuda and first[1].is_cuda
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    # Parameters are drawn on the CPU: flips and turns match a CPU run exactly.
    cfg = AugmentConfig.from_strength(1.0, affine_prob=0.0, elastic_prob=0.0)
    on_cpu = BatchAugmenter(cfg, spatial_dims)(images.cpu(), masks.cpu(), h.seeded(2))[1]
    assert torch.equal(
        BatchAugmenter(cfg, spatial_dims)(images, masks, h.seeded(2))[1].cpu(), on_cpu
    )
