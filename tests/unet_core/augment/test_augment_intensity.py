"""Intensity transforms: image-only, within their ranges, masks untouched."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from unet_core.augment import INTENSITY_TRANSFORMS, BatchAugmenter
from unet_core.augment.intensity import blur


def _dims(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


@pytest.mark.parametrize("name", sorted(INTENSITY_TRANSFORMS))
def test_each_transform_changes_images_and_leaves_masks_untouched(
    h: SimpleNamespace, spatial_dims: int, name: str
) -> None:
    images, masks = h.batch(spatial_dims)
    masks_before = masks.clone()
    out_images, out_masks = BatchAugmenter(h.only(**{f"{name}_prob": 1.0}), spatial_dims)(
        images, masks, h.seeded()
    )
    assert out_images.shape == images.shape and out_images.dtype == images.dtype
    assert torch.equal(out_masks, masks_before)
    assert not torch.allclose(out_images, images)
    assert torch.isfinite(out_images).all()


def test_brightness_scales_each_sample_within_range(h: SimpleNamespace) -> None:
    images, masks = h.batch(2)
    cfg = h.only(brightness_prob=1.0, brightness_range=(0.5, 0.8))
    out, _ = BatchAugmenter(cfg, 2)(images + 1.0, masks, h.seeded())
    ratio = out / (images + 1.0)
    per_sample = ratio.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample), atol=1e-5)
    assert ((per_sample >= 0.5 - 1e-6) & (per_sample <= 0.8 + 1e-6)).all()


def test_contrast_keeps_the_mean_and_gamma_keeps_the_range(
    h: SimpleNamespace, spatial_dims: int
) -> None:
    images, masks = h.batch(spatial_dims)
    out, _ = BatchAugmenter(h.only(contrast_prob=1.0), spatial_dims)(images, masks, h.seeded())
    assert torch.allclose(out.mean(_dims(out)), images.mean(_dims(images)), atol=1e-5)
    out, _ = BatchAugmenter(h.only(gamma_prob=1.0, gamma_range=(1.5, 2.0)), spatial_dims)(
        images - 0.5, masks, h.seeded()
    )
    assert torch.allclose(out.amin(_dims(out)), (images - 0.5).amin(_dims(images)), atol=1e-5)
    assert torch.allclose(out.amax(_dims(out)), (images - 0.5).amax(_dims(images)), atol=1e-5)
    assert (out.mean(_dims(out)) < (images - 0.5).mean(_dims(images))).all()  # gamma > 1 darkens


def test_noise_std_is_within_range(h: SimpleNamespace) -> None:
    images, masks = torch.zeros(8, 1, 64, 64), torch.zeros(8, 64, 64, dtype=torch.long)
    out, _ = BatchAugmenter(h.only(noise_prob=1.0, noise_std=(0.1, 0.2)), 2)(
        images, masks, h.seeded()
    )
    std = out.flatten(1).std(dim=1)
    assert ((std > 0.09) & (std < 0.21)).all()


def test_blur_smooths_noise_and_keeps_constants(h: SimpleNamespace, spatial_dims: int) -> None:
    shape = (1, 2, *([16] * spatial_dims))
    noise = torch.randn(shape, generator=h.seeded())
    sigma = torch.tensor([1.0])
    assert blur(noise, sigma, h.seeded()).std() < 0.6 * noise.std()
    constant = torch.full(shape, 3.0)
    assert torch.allclose(blur(constant, sigma, h.seeded()), constant, atol=1e-5)


def test_probability_zero_samples_are_exactly_untouched(h: SimpleNamespace) -> None:
    images, masks = h.batch(2, batch_size=32)
    out, _ = BatchAugmenter(h.only(gamma_prob=0.5), 2)(images, masks, h.seeded())
    same = torch.tensor([torch.equal(out[b], images[b]) for b in range(32)])
    assert 4 < int(same.sum()) < 28  # roughly half fired, the rest are bit-identical
