"""Hausdorff distance and HD95 between boolean masks, in physical units (voxel spacing).

Surface voxels are the foreground voxels that a one-voxel binary erosion (face
connectivity) removes; voxels on the image border count as surface. Distances run from
each surface voxel of one mask to the nearest surface voxel of the other, computed with
``scipy.ndimage.distance_transform_edt`` (``sampling=spacing``). The symmetric distance is
the larger of the two directed values; with ``percentile`` each direction takes that
percentile (linear interpolation) first. This is MONAI's ``HausdorffDistanceMetric``.

Empty masks: both empty -> 0.0; exactly one empty -> ``inf`` (no surface to measure to;
``inf`` cannot be mistaken for a real distance, and MONAI returns ``inf`` too). Filter or
clip it before averaging over images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from unet_core.metrics.functional import MaskLike, as_bool_array

Spacing = float | Sequence[float]


def surface(mask: np.ndarray) -> np.ndarray:
    """Boolean surface (one-voxel boundary) of a boolean mask.

    Args:
        mask: ``[*spatial]`` bool array.

    Returns:
        ``[*spatial]`` bool array, True on foreground voxels that touch background or the
        image border.
    """
    # border_value=0: the image border counts as background, so a mask touching it has a
    # surface there (MONAI does the same).
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _crop_to_union(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # The distance transform is the cost; cropping to the union's bounding box plus one
    # voxel leaves every surface voxel and every distance unchanged.
    union = pred | target
    box = []
    for axis in range(union.ndim):
        other_axes = tuple(a for a in range(union.ndim) if a != axis)
        hits = np.flatnonzero(union.any(axis=other_axes))
        box.append(slice(max(hits[0] - 1, 0), hits[-1] + 2))
    return pred[tuple(box)], target[tuple(box)]


def directed_surface_distances(
    from_surface: np.ndarray, to_surface: np.ndarray, spacing: Sequence[float]
) -> np.ndarray:
    """Distance from every voxel of ``from_surface`` to the nearest voxel of ``to_surface``.

    Args:
        from_surface: ``[*spatial]`` bool, non-empty.
        to_surface: ``[*spatial]`` bool, non-empty.
        spacing: Voxel size per axis.

    Returns:
        1-D float array, one distance per voxel of ``from_surface``.
    """
    distance_map = ndimage.distance_transform_edt(~to_surface, sampling=spacing)
    return np.asarray(distance_map)[from_surface]


def _check_spacing(spacing: Spacing | None, ndim: int) -> list[float]:
    if spacing is None:
        return [1.0] * ndim
    if isinstance(spacing, int | float):
        return [float(spacing)] * ndim
    values = [float(s) for s in spacing]
    if len(values) != ndim:
        raise ValueError(f"spacing needs {ndim} values for {ndim}D masks, got {values}")
    return values


def hausdorff_distance(
    pred: MaskLike,
    target: MaskLike,
    percentile: float | None = None,
    spacing: Spacing | None = None,
) -> float:
    """Symmetric (percentile) Hausdorff distance between two boolean masks.

    Args:
        pred: Predicted mask ``[*spatial]`` (2D or 3D; numpy or torch; nonzero = foreground).
        target: Ground-truth mask of the same shape.
        percentile: None for the maximum (classic Hausdorff); 95 for HD95.
        spacing: Voxel size, one number (isotropic) or one per axis; None means 1.

    Returns:
        Distance in the units of ``spacing``: 0.0 if both masks are empty, ``inf`` if
        exactly one is.
    """
    p, t = as_bool_array(pred), as_bool_array(target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
    if percentile is not None and not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    sampling = _check_spacing(spacing, p.ndim)
    p_any, t_any = bool(p.any()), bool(t.any())
    if not p_any and not t_any:
        return 0.0
    if not p_any or not t_any:
        return float("inf")
    p, t = _crop_to_union(p, t)
    p_surface, t_surface = surface(p), surface(t)
    directed = (
        directed_surface_distances(p_surface, t_surface, sampling),
        directed_surface_distances(t_surface, p_surface, sampling),
    )
    if percentile is None:
        return float(max(d.max() for d in directed))
    return float(max(np.percentile(d, percentile) for d in directed))


def hd95(pred: MaskLike, target: MaskLike, spacing: Spacing | None = None) -> float:
    """95th-percentile Hausdorff distance; see :func:`hausdorff_distance`."""
    return hausdorff_distance(pred, target, percentile=95, spacing=spacing)
