"""Resample arrays to a target voxel spacing: images linearly, masks by nearest neighbour.

The output grid starts at the input's first voxel centre and steps by exactly ``target``
(in the units of ``spacing``), so the new spacing is the target itself and the new affine
is the old one with its spatial columns scaled by ``target / spacing``. Its shape is
``round(shape * spacing / target)`` per axis; the last voxel may sit up to half a voxel
past the input's last one, where values repeat the edge.

    >>> image = np.zeros((1, 20, 64, 64), np.int16)  # [C, D, H, W], 3 x 1 x 1 mm
    >>> resample_image(image, (3.0, 1.0, 1.0), (1.5, 1.5, 1.5)).shape
    (1, 40, 43, 43)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Spacing = Sequence[float]


def same_spacing(spacing: Spacing, target: Spacing) -> bool:
    """True when the spacings agree to float32 precision (NIfTI stores float32 zooms)."""
    return bool(np.allclose(spacing, target, rtol=1e-5, atol=0.0))


def resampled_shape(shape: Sequence[int], spacing: Spacing, target: Spacing) -> tuple[int, ...]:
    """``round(shape * spacing / target)`` per axis, at least 1."""
    _check(shape, spacing, target)
    return tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target, strict=True))


def resampled_affine(affine: np.ndarray, spacing: Spacing, target: Spacing) -> np.ndarray:
    """The ``(dims+1)^2`` voxel-to-world matrix of the resampled grid (same origin)."""
    scale = np.diag([*(t / s for s, t in zip(spacing, target, strict=True)), 1.0])
    return np.asarray(affine, dtype=np.float64) @ scale


def resample_image(image: np.ndarray, spacing: Spacing, target: Spacing) -> np.ndarray:
    """``[C, *spatial]`` -> ``[C, *resampled]`` float32, linear, channel by channel.

    Returns ``image`` itself (no copy, dtype kept) when the spacing is already the target.
    """
    if same_spacing(spacing, target):
        return image
    shape = resampled_shape(image.shape[1:], spacing, target)
    return np.stack([_resample(c.astype(np.float32), spacing, target, shape, 1) for c in image])


def resample_mask(
    mask: np.ndarray,
    spacing: Spacing,
    target: Spacing,
    shape: Sequence[int] | None = None,
) -> np.ndarray:
    """``[*spatial]`` labels -> uint8 ``[*shape]`` by nearest neighbour (no new labels).

    Args:
        shape: the output shape; None: `resampled_shape`. Give the original shape to map
            a prediction made on the resampled grid back onto its input's grid exactly.
    """
    shape = tuple(shape) if shape is not None else resampled_shape(mask.shape, spacing, target)
    if same_spacing(spacing, target) and shape == mask.shape:
        return mask.astype(np.uint8, copy=False)
    return _resample(mask.astype(np.uint8, copy=False), spacing, target, shape, 0)


def _resample(
    array: np.ndarray, spacing: Spacing, target: Spacing, shape: tuple[int, ...], order: int
) -> np.ndarray:
    # Imported here: scipy.ndimage is slow to import and only resampling needs it.
    from scipy.ndimage import affine_transform

    _check(array.shape, spacing, target)
    # Output voxel j samples input coordinate j * target / spacing (a diagonal matrix).
    step = np.array([t / s for s, t in zip(spacing, target, strict=True)])
    return affine_transform(array, step, output_shape=shape, order=order, mode="nearest")


def _check(shape: Sequence[int], spacing: Spacing, target: Spacing) -> None:
    if not len(shape) == len(spacing) == len(target):
        raise ValueError(
            f"spatial shape {tuple(shape)}, spacing {tuple(spacing)} and target "
            f"{tuple(target)} need one value per spatial axis"
        )
    if min(spacing) <= 0 or min(target) <= 0:
        raise ValueError(f"spacing {tuple(spacing)} and target {tuple(target)} must be positive")
