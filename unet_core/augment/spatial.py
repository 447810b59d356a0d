"""Spatial transforms: exact flips and quarter turns, and one affine + elastic resample.

Flips and quarter turns are index permutations, applied exactly (no interpolation) so a
flipped label map is the label map, flipped. Rotation, scaling, translation and the
elastic field are folded into a single sampling grid per batch, so they cost one
``grid_sample`` for the images (bilinear) and one for the masks (nearest neighbour, so a
mask only ever holds values it held before, plus 0 outside the field of view when
``padding_mode="zeros"``).

Coordinates follow ``torch.nn.functional.affine_grid``: normalised to [-1, 1] with the
*last* tensor axis first (x = W, y = H, z = D), ``align_corners=False``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F


def subset_apply(
    x: torch.Tensor, index: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Return ``x`` with samples ``index`` replaced by ``fn(x[index])`` (out of place).

    ``index`` lives on the CPU (drawn there), so choosing samples never syncs the device.
    """
    if index.numel() == 0:
        return x
    index = index.to(x.device, non_blocking=True)
    return x.index_copy(0, index, fn(x.index_select(0, index)))


def flip_and_rot90(
    x: torch.Tensor, flips: torch.Tensor, transpose: torch.Tensor, n_dims: int
) -> torch.Tensor:
    """Apply per-sample transposes of the last two axes, then per-sample axis flips.

    Any quarter turn is a transpose followed by flips (see `rot90_as_flips`), so these two
    permutations cover flips and rot90 together.

    Args:
        x: ``[B, C, *spatial]`` images or ``[B, 1, *spatial]`` masks.
        flips: ``[B, n_dims]`` bool on the CPU, flip sample b along spatial axis d.
        transpose: ``[B]`` bool on the CPU; only used when the last two sides are equal.
        n_dims: number of spatial axes.

    Returns:
        The permuted tensor, same shape and dtype.
    """
    first = x.ndim - 2
    x = subset_apply(x, transpose.nonzero().flatten(), lambda t: t.transpose(first, first + 1))
    for axis in range(n_dims):
        dim = 2 + axis
        x = subset_apply(x, flips[:, axis].nonzero().flatten(), partial(torch.flip, dims=(dim,)))
    return x


def rot90_as_flips(k: torch.Tensor, n_dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Express ``torch.rot90(x, k, dims=(-2, -1))`` as a transpose then flips.

    k=1 is flip(-2) after transpose, k=2 flips both axes, k=3 is flip(-1) after transpose.

    Args:
        k: ``[B]`` int quarter turns in {0, 1, 2, 3}.
        n_dims: number of spatial axes.

    Returns:
        ``(flips [B, n_dims] bool, transpose [B] bool)``.
    """
    flips = torch.zeros(k.shape[0], n_dims, dtype=torch.bool)
    flips[:, -2] = (k == 1) | (k == 2)
    flips[:, -1] = (k == 2) | (k == 3)
    return flips, (k % 2) == 1


def rotation_matrix(angles: torch.Tensor, n_dims: int) -> torch.Tensor:
    """Rotation matrices in (x, y[, z]) order.

    Args:
        angles: ``[B]`` radians in 2D; ``[B, 3]`` radians about x, y, z in 3D.
        n_dims: 2 or 3.

    Returns:
        ``[B, n_dims, n_dims]`` float32.
    """
    if n_dims == 2:
        cos, sin = torch.cos(angles), torch.sin(angles)
        return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    rot = torch.eye(3).repeat(angles.shape[0], 1, 1)
    for axis in range(3):
        cos, sin = torch.cos(angles[:, axis]), torch.sin(angles[:, axis])
        i, j = [a for a in range(3) if a != axis]
        step = torch.eye(3).repeat(angles.shape[0], 1, 1)
        step[:, i, i], step[:, i, j], step[:, j, i], step[:, j, j] = cos, -sin, sin, cos
        rot = step @ rot
    return rot


def affine_theta(
    rotation: torch.Tensor, zoom: torch.Tensor, shift: torch.Tensor, spatial: tuple[int, ...]
) -> torch.Tensor:
    """Sampling matrices for ``affine_grid``: output -> input coordinates.

    The transform is built in pixel units (normalised coordinates stretched by the side
    lengths) so a rotation of a non-square image stays a rotation, not a shear.

    Args:
        rotation: ``[B, n, n]`` rotations in (x, y, z) order.
        zoom: ``[B]`` zoom factors; >1 magnifies (samples a smaller input region).
        shift: ``[B, n]`` translations as fractions of each side, (x, y, z) order.
        spatial: tensor-order spatial sides ``(H, W)`` or ``(D, H, W)``.

    Returns:
        ``[B, n, n + 1]`` float32.
    """
    half = torch.tensor(spatial[::-1], dtype=torch.float32) / 2  # (x, y, z) half-sides
    linear = rotation / zoom.view(-1, 1, 1)
    linear = linear * half.view(1, 1, -1) / half.view(1, -1, 1)  # S^-1 A S
    return torch.cat([linear, (2.0 * shift).unsqueeze(-1)], dim=-1)


def elastic_field(
    coarse: torch.Tensor, spatial: tuple[int, ...], device: torch.device
) -> torch.Tensor:
    """Upsample control-point displacements to a smooth dense field.

    Args:
        coarse: ``[B, n, *grid]`` displacements in normalised units, (x, y, z) channel order.
        spatial: tensor-order spatial sides.
        device: where the field is needed.

    Returns:
        ``[B, *spatial, n]``, ready to add to an ``affine_grid`` output.
    """
    mode = "bicubic" if len(spatial) == 2 else "trilinear"
    dense = F.interpolate(coarse.to(device), size=spatial, mode=mode, align_corners=True)
    return dense.movedim(1, -1)


def resample(
    images: torch.Tensor, masks: torch.Tensor, grid: torch.Tensor, padding_mode: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample images (bilinear) and masks (nearest) on one grid.

    Args:
        images: ``[b, C, *spatial]`` float.
        masks: ``[b, 1, *spatial]`` integer labels.
        grid: ``[b, *spatial, n]`` sampling locations, normalised (x, y, z).
        padding_mode: ``grid_sample`` padding for both, so they stay aligned.

    Returns:
        ``(images, masks)`` in their input dtypes.
    """
    grid = grid.to(images.dtype)
    sample = partial(F.grid_sample, padding_mode=padding_mode, align_corners=False)
    out_images = sample(images, grid, mode="bilinear")
    # Nearest neighbour copies existing label values; round guards float -> int casting.
    labels = sample(masks.to(grid.dtype), grid, mode="nearest")
    return out_images, labels.round().to(masks.dtype)


def degrees_to_radians(degrees: torch.Tensor) -> torch.Tensor:
    """Convert degrees to radians."""
    return degrees * (math.pi / 180.0)
