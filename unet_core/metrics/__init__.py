"""Segmentation metrics: a streaming, all-reducible accumulator and per-image functions.

- :class:`MetricAccumulator` for training/evaluation loops (sums, safe under all_reduce).
- ``dice_score``, ``iou_score``, ``precision_score``, ``recall_score``, ``pixel_accuracy``,
  ``hausdorff_distance`` / ``hd95`` on boolean masks (numpy or torch, 2D/3D).
- :func:`per_image_metrics` for per-image tables; ``METRICS`` / ``list_metrics()`` name them.

Empty-mask conventions are documented in :mod:`unet_core.metrics.functional` (overlap)
and :mod:`unet_core.metrics.surface` (distances).
"""

from __future__ import annotations

from unet_core.metrics.accumulator import SUMMARY_METRICS, MetricAccumulator
from unet_core.metrics.functional import (
    confusion_counts,
    dice_score,
    iou_score,
    pixel_accuracy,
    precision_score,
    recall_score,
)
from unet_core.metrics.per_image import METRICS, list_metrics, per_image_metrics
from unet_core.metrics.surface import hausdorff_distance, hd95

__all__ = [
    "METRICS",
    "SUMMARY_METRICS",
    "MetricAccumulator",
    "confusion_counts",
    "dice_score",
    "hausdorff_distance",
    "hd95",
    "iou_score",
    "list_metrics",
    "per_image_metrics",
    "pixel_accuracy",
    "precision_score",
    "recall_score",
]
