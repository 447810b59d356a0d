"""Per-image metric tables and the registry of per-image (mask-pair) metrics."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence

import numpy as np
import torch

from unet_core.metrics.functional import (
    MaskLike,
    as_bool_array,
    dice_score,
    iou_score,
    pixel_accuracy,
    precision_score,
    recall_score,
)
from unet_core.metrics.surface import Spacing, hausdorff_distance, hd95

# (pred mask, target mask, spacing) -> value; region metrics ignore the spacing.
MaskMetric = Callable[[np.ndarray, np.ndarray, Spacing | None], float]

METRICS: dict[str, MaskMetric] = {
    "dice": lambda p, t, s: dice_score(p, t),
    "iou": lambda p, t, s: iou_score(p, t),
    "precision": lambda p, t, s: precision_score(p, t),
    "recall": lambda p, t, s: recall_score(p, t),
    "pixel_accuracy": lambda p, t, s: pixel_accuracy(p, t),
    "hausdorff": lambda p, t, s: hausdorff_distance(p, t, spacing=s),
    "hd95": lambda p, t, s: hd95(p, t, spacing=s),
}


def list_metrics(pattern: str | None = None) -> list[str]:
    """Sorted names of per-image metrics, optionally filtered by a glob ``pattern``."""
    names = sorted(METRICS)
    return names if pattern is None else fnmatch.filter(names, pattern)


def _lookup(names: Sequence[str] | None) -> list[str]:
    chosen = list(METRICS) if names is None else list(names)
    unknown = [n for n in chosen if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; valid names: {list_metrics()}")
    return chosen


def per_image_metrics(
    pred_masks: MaskLike,
    target_masks: MaskLike,
    spacing: Spacing | None = None,
    num_classes: int | None = None,
    metrics: Sequence[str] | None = None,
) -> list[dict[str, float]]:
    """One row of metrics per image, for per-image tables (e.g. worst cases of a run).

    Args:
        pred_masks: ``[B, *spatial]``: boolean masks when ``num_classes`` is None, else
            integer label maps with values in ``[0, num_classes)``.
        target_masks: Same shape and kind as ``pred_masks``.
        spacing: Voxel size shared by all images (for the distance metrics).
        num_classes: For label maps: C including background. Rows then hold
            ``{metric}_class{c}`` for every foreground class c >= 1 and ``{metric}``, their
            mean (``inf`` Hausdorff values propagate to the mean).
        metrics: Names from :func:`list_metrics`; None computes all (distance metrics are
            the slow ones on large 3D volumes).

    Returns:
        A list of B dicts with ``"index"`` (the image's position) and the metric values.
    """
    names = _lookup(metrics)
    preds, targets = _as_array(pred_masks), _as_array(target_masks)
    if preds.shape != targets.shape:
        raise ValueError(
            f"pred_masks and target_masks shapes differ: {preds.shape} vs {targets.shape}"
        )
    rows = []
    for index, (pred, target) in enumerate(zip(preds, targets, strict=True)):
        row: dict[str, float] = {"index": index}
        if num_classes is None:
            p, t = as_bool_array(pred), as_bool_array(target)
            row.update({name: METRICS[name](p, t, spacing) for name in names})
        else:
            row.update(_class_row(pred, target, num_classes, names, spacing))
        rows.append(row)
    return rows


def _as_array(masks: MaskLike) -> np.ndarray:
    return masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)


def _class_row(
    pred: np.ndarray,
    target: np.ndarray,
    num_classes: int,
    names: list[str],
    spacing: Spacing | None,
) -> dict[str, float]:
    if num_classes < 2:
        raise ValueError("num_classes counts the background too; label maps need num_classes >= 2")
    row: dict[str, float] = {}
    for name in names:
        values = [METRICS[name](pred == c, target == c, spacing) for c in range(1, num_classes)]
        row.update({f"{name}_class{c}": v for c, v in enumerate(values, start=1)})
        row[name] = float(np.mean(values))
    return row
