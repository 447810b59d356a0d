"""Flips, quarter turns, affine and elastic: exactness, alignment, label safety."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from unet_core.augment import BatchAugmenter
from unet_core.augment.spatial import affine_theta, rotation_matrix


def _flip_variants(x: torch.Tensor, n: int) -> list[torch.Tensor]:
    """Every combination of flips of the last n axes of one sample."""
    axes = list(range(x.ndim - n, x.ndim))
    return [
        x.flip(list(c)) if c else x for r in range(n + 1) for c in itertools.combinations(axes, r)
    ]


def _dihedral(x: torch.Tensor, n: int) -> list[torch.Tensor]:
    """Quarter turns in the last two axes composed with flips of all spatial axes."""
    return [v for k in range(4) for v in _flip_variants(torch.rot90(x, k, dims=(-2, -1)), n)]


def test_flip_prob_one_flips_every_axis_exactly(h: SimpleNamespace, spatial_dims: int) -> None:
    images, masks = h.batch(spatial_dims)
    out_images, out_masks = BatchAugmenter(h.only(flip_prob=1.0), spatial_dims)(
        images, masks, h.seeded()
    )
    axes = list(range(-spatial_dims, 0))
    assert torch.equal(out_images, images.flip(axes))
    assert torch.equal(out_masks, masks.flip(axes))


def test_flips_and_rot90_are_permutations_that_move_image_and_mask_together(
    h: SimpleNamespace,
    spatial_dims: int,
) -> None:
    _, masks = h.batch(spatial_dims, batch_size=16)
    images = masks.unsqueeze(1).float() * 10 + torch.rand(masks.unsqueeze(1).shape)  # unique values
    aug = BatchAugmenter(h.only(flip_prob=0.5, rot90_prob=0.8), spatial_dims)
    out_images, out_masks = aug(images, masks, h.seeded(3))
    assert torch.equal((out_images // 10).long()[:, 0], out_masks)  # still aligned
    changed = 0
    for b in range(len(images)):
        variants = _dihedral(images[b], spatial_dims)
        assert any(torch.equal(out_images[b], v) for v in variants), f"sample {b} is no permutation"
        changed += not torch.equal(out_images[b], images[b])
    assert changed >= len(images) // 2  # the transforms did fire


def test_rot90_on_a_non_square_plane_only_half_turns(h: SimpleNamespace) -> None:
    images = torch.rand(8, 1, 10, 14)
    masks = (images[:, 0] > 0.5).long()
    out_images, out_masks = BatchAugmenter(h.only(rot90_prob=1.0), 2)(images, masks, h.seeded())
    assert out_images.shape == images.shape and out_masks.shape == masks.shape
    assert torch.equal(out_images, torch.rot90(images, 2, dims=(-2, -1)))
    assert torch.equal(out_masks, torch.rot90(masks, 2, dims=(-2, -1)))


def test_rotation_matrix_and_theta_give_exact_quarter_and_half_turns() -> None:
    square = torch.arange(36.0).view(1, 1, 6, 6)
    theta = affine_theta(
        rotation_matrix(torch.tensor([math.pi / 2]), 2), torch.ones(1), torch.zeros(1, 2), (6, 6)
    )
    grid = F.affine_grid(theta, [1, 1, 6, 6], align_corners=False)
    turned = F.grid_sample(square, grid, mode="nearest", align_corners=False)
    assert any(torch.equal(turned, torch.rot90(square, k, dims=(-2, -1))) for k in (1, 3))
    # A half turn of a non-square image stays a rotation (no shear from the aspect ratio).
    wide = torch.arange(32.0).view(1, 1, 4, 8)
    theta = affine_theta(
        rotation_matrix(torch.tensor([math.pi]), 2), torch.ones(1), torch.zeros(1, 2), (4, 8)
    )
    grid = F.affine_grid(theta, [1, 1, 4, 8], align_corners=False)
    assert torch.equal(
        F.grid_sample(wide, grid, mode="nearest", align_corners=False), wide.flip([-2, -1])
    )


def test_rotation_matrix_3d_is_orthonormal() -> None:
    rot = rotation_matrix(torch.tensor([[0.3, -1.1, 2.0]]), 3)
    assert torch.allclose(rot[0] @ rot[0].T, torch.eye(3), atol=1e-6)
    assert torch.isclose(torch.linalg.det(rot[0]), torch.tensor(1.0), atol=1e-6)


def test_identity_affine_resample_is_the_identity(h: SimpleNamespace, spatial_dims: int) -> None:
    images, masks = h.batch(spatial_dims)
    cfg = h.only(affine_prob=1.0, rotate_deg=0.0, scale_range=(1.0, 1.0), translate_frac=0.0)
    out_images, out_masks = BatchAugmenter(cfg, spatial_dims)(images, masks, h.seeded())
    assert torch.allclose(out_images, images, atol=1e-5)
    assert torch.equal(out_masks, masks)


@pytest.mark.parametrize("transform", ["affine", "elastic", "both"])
def test_resampling_keeps_labels_and_alignment(
    h: SimpleNamespace, spatial_dims: int, transform: str
) -> None:
    labels = (2, 5, 9)  # no 0: reflection padding must not invent a background label
    _, masks = h.batch(spatial_dims, labels=labels)
    onehot = torch.stack([(masks == label).float() for label in labels], dim=1)  # image = mask
    fields = {
        "affine": {"affine_prob": 1.0, "rotate_deg": 30.0},
        "elastic": {"elastic_prob": 1.0, "elastic_magnitude": 0.03},
        "both": {"affine_prob": 1.0, "elastic_prob": 1.0},
    }[transform]
    out_images, out_masks = BatchAugmenter(h.only(**fields), spatial_dims)(
        onehot, masks, h.seeded(1)
    )
    assert out_masks.shape == masks.shape and out_masks.dtype == masks.dtype
    assert set(out_masks.unique().tolist()) <= set(labels)
    assert not torch.equal(out_masks, masks)  # something moved
    # Bilinear one-hot and nearest mask come from one grid: the argmax matches the mask
    # except within half a pixel of label edges (a one-pixel misalignment gives ~0.8).
    decoded = torch.tensor(labels)[out_images.argmax(dim=1)]
    assert (decoded == out_masks).float().mean() > 0.97


def test_zeros_padding_only_adds_background(h: SimpleNamespace, spatial_dims: int) -> None:
    images, masks = h.batch(spatial_dims, labels=(3, 4))
    cfg = h.only(
        affine_prob=1.0, scale_range=(0.6, 0.7), padding_mode="zeros"
    )  # zoom out: empty border
    _, out_masks = BatchAugmenter(cfg, spatial_dims)(images, masks, h.seeded())
    assert set(out_masks.unique().tolist()) == {0, 3, 4}


def test_elastic_displacement_is_small_and_smooth(h: SimpleNamespace) -> None:
    images, masks = h.batch(2, labels=(0, 1))
    cfg = h.only(elastic_prob=1.0, elastic_magnitude=0.01)
    _, out_masks = BatchAugmenter(cfg, 2)(images, masks, h.seeded())
    changed = (out_masks != masks).float().mean()
    assert 0.0 < changed < 0.2  # a ~0.25 px field moves h.only pixels at label edges


def test_multichannel_images_move_with_the_mask(h: SimpleNamespace, spatial_dims: int) -> None:
    _, masks = h.batch(spatial_dims, channels=3)
    images = masks.unsqueeze(1).float().repeat(1, 3, *[1] * spatial_dims) * torch.tensor(
        [1.0, 2.0, 3.0]
    ).view(1, 3, *[1] * spatial_dims)
    out_images, out_masks = BatchAugmenter(h.only(flip_prob=0.5, rot90_prob=0.5), spatial_dims)(
        images, masks, h.seeded()
    )
    for c in range(3):
        assert torch.equal(out_images[:, c], out_masks.float() * (c + 1))


def test_shapes_are_kept_for_odd_sizes(h: SimpleNamespace, spatial_dims: int) -> None:
    shape = (9, 13) if spatial_dims == 2 else (5, 7, 7)
    images, masks = torch.rand(3, 1, *shape), torch.randint(0, 2, (3, *shape))
    out_images, out_masks = BatchAugmenter(
        h.only(**dict.fromkeys(["flip_prob", "rot90_prob", "affine_prob", "elastic_prob"], 1.0)),
        spatial_dims,
    )(images, masks, h.seeded())
    assert out_images.shape == images.shape and out_masks.shape == masks.shape
    assert h.SHAPES[spatial_dims]  # helper shapes exist for both dims
