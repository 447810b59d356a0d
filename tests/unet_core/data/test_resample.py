"""Resampling to a target spacing: shape, affine, identity, labels, volume."""

from __future__ import annotations

import numpy as np
import pytest

from unet_core.data.resample import (
    resample_image,
    resample_mask,
    resampled_affine,
    resampled_shape,
)


def test_shape_and_affine_follow_the_spacing_ratio() -> None:
    assert resampled_shape((20, 64, 63), (3.0, 1.0, 1.0), (1.5, 1.5, 1.5)) == (40, 43, 42)
    affine = np.diag([3.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (-10.0, 5.0, 2.0)
    new = resampled_affine(affine, (3.0, 1.0, 1.0), (1.5, 1.5, 1.5))
    # Voxel sizes become the target; voxel (0, 0, 0) stays at the same world point.
    assert np.allclose(np.linalg.norm(new[:3, :3], axis=0), (1.5, 1.5, 1.5))
    assert np.allclose(new[:3, 3], affine[:3, 3])
    # A world point maps to the same place through either grid.
    point = np.array([4.0, 10.0, 6.0, 1.0])  # an old voxel index
    assert np.allclose(affine @ point, new @ (point * [2.0, 1 / 1.5, 1 / 1.5, 1.0]))


def test_image_is_linear_float32_per_channel() -> None:
    ramp = np.arange(8, dtype=np.int16)[None, :, None].repeat(4, axis=2)  # [1, 8, 4]
    image = np.concatenate([ramp, 10 * ramp])  # two channels
    out = resample_image(image, (1.0, 1.0), (0.5, 1.0))
    assert out.dtype == np.float32 and out.shape == (2, 16, 4)
    assert np.allclose(out[0, :15, 0], np.arange(15) / 2)  # midpoints interpolated
    assert np.allclose(out[1], 10 * out[0])


def test_same_spacing_is_the_identity_without_a_copy() -> None:
    image = np.ones((1, 5, 6, 7), np.int16)
    assert resample_image(image, (2.0, 1.0, 1.0), (2.0, 1.0, 1.0)) is image
    mask = np.ones((5, 6, 7), np.uint8)
    assert resample_mask(mask, (2.0, 1.0, 1.0), (2.0, 1.0, 1.0)) is mask


def test_masks_keep_their_label_set() -> None:
    rng = np.random.default_rng(0)
    mask = rng.choice(np.array([0, 3, 7], np.uint8), size=(9, 11, 10))
    out = resample_mask(mask, (2.5, 0.8, 1.0), (1.0, 1.0, 1.3))
    assert out.dtype == np.uint8 and out.shape == (22, 9, 8)
    assert set(np.unique(out)) <= {0, 3, 7}


def test_explicit_shape_maps_back_onto_the_input_grid() -> None:
    mask = np.zeros((12, 12, 12), np.uint8)
    mask[3:9, 3:9, 3:9] = 1
    down = resample_mask(mask, (1.0, 1.0, 1.0), (1.7, 1.7, 1.7))
    back = resample_mask(down, (1.7, 1.7, 1.7), (1.0, 1.0, 1.0), shape=mask.shape)
    assert back.shape == mask.shape


def test_sphere_volume_survives_resample_and_back() -> None:
    shape, spacing, target = (40, 100, 100), (2.0, 0.7, 0.7), (1.0, 1.0, 1.0)
    grid = np.stack(
        np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing, strict=True)), indexing="ij")
    )
    centre = np.array([n * s / 2 for n, s in zip(shape, spacing, strict=True)])[:, None, None, None]
    sphere = (np.linalg.norm(grid - centre, axis=0) < 25.0).astype(np.uint8)
    there = resample_mask(sphere, spacing, target)
    back = resample_mask(there, target, spacing, shape=shape)
    volume = int(sphere.sum()) * float(np.prod(spacing))  # mm^3, ~65 000
    assert int(there.sum()) * float(np.prod(target)) == pytest.approx(volume, rel=0.03)
    assert int(back.sum()) == pytest.approx(int(sphere.sum()), rel=0.03)
    assert (back == sphere).mean() > 0.99


def test_wrong_lengths_or_spacing_are_refused() -> None:
    with pytest.raises(ValueError, match="one value per spatial axis"):
        resampled_shape((4, 4), (1.0, 1.0), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        resample_mask(np.zeros((4, 4), np.uint8), (1.0, 0.0), (1.0, 1.0))
