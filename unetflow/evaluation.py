"""Evaluate a model package the way it is served: raw images in, sliding-window masks out.

Training (per-image test table, prediction grid) and promotion (paired comparison of
two registered versions) both go through here, so a version is judged by exactly the
inference path users get from `models:/...`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unet_core.data import PreparedDataset
from unet_core.metrics import MetricAccumulator, per_image_metrics
from unet_core.package import Segmenter

TABLE_METRICS = ("dice", "iou", "precision", "recall", "hd95")


@dataclass(frozen=True)
class SplitPrediction:
    """Raw images, targets and predicted masks of one split (numpy, CPU)."""

    stems: list[str]
    images: np.ndarray  # [N, C, *spatial] raw intensities
    targets: np.ndarray  # [N, *spatial] label maps
    preds: np.ndarray  # [N, *spatial] uint8 label maps


def predict_split(
    segmenter: Segmenter,
    data_dir: Path,
    split: str,
    limit: int | None = None,
    batch_size: int = 8,
    accumulator: MetricAccumulator | None = None,
) -> SplitPrediction:
    """Predict masks for (the first `limit` images of) a split, as the model is served.

    Args:
        accumulator: also fed every batch's logits and targets, so the split's global
            metrics come from this same pass (a large 3D test set is read and predicted
            once, not once per consumer). Build it with the spec's mode and threshold.
    """
    if segmenter.spec.mode == "multilabel":
        raise ValueError("per-image evaluation supports binary and multiclass models only")
    data = PreparedDataset(data_dir, split, normalize=False)
    count = len(data) if limit is None else min(limit, len(data))
    images = np.asarray(data.images[:count], dtype=np.float32)
    targets = np.asarray(data.masks[:count])
    preds = []
    for start in range(0, count, batch_size):
        logits = segmenter.logits(torch.from_numpy(images[start : start + batch_size]))
        if accumulator is not None:
            truth = torch.from_numpy(targets[start : start + batch_size].astype(np.int64))
            accumulator.update(logits.cpu(), truth)
        preds.append(segmenter.masks(logits).cpu().numpy())
    return SplitPrediction(
        stems=[str(s) for s in data.stems[:count]],
        images=images,
        targets=targets,
        preds=np.concatenate(preds) if preds else np.zeros((0,), np.uint8),
    )


def per_image_table(
    prediction: SplitPrediction, num_classes: int, metrics: tuple[str, ...] = TABLE_METRICS
) -> list[dict[str, float | str]]:
    """One row per image: `image` (its stem) and each metric (HD95 in pixels)."""
    if num_classes <= 1:  # binary: foreground is any non-zero label
        rows = per_image_metrics(
            prediction.preds > 0, prediction.targets > 0, metrics=list(metrics)
        )
    else:
        rows = per_image_metrics(
            prediction.preds, prediction.targets, num_classes=num_classes, metrics=list(metrics)
        )
    return [
        {"image": stem, **{k: float(v) for k, v in row.items() if k != "index"}}
        for stem, row in zip(prediction.stems, rows, strict=True)
    ]


def table_columns(rows: list[dict[str, float | str]]) -> dict[str, list]:
    """Rows -> columns, with non-finite values as None (JSON has no inf)."""
    columns: dict[str, list] = {key: [] for key in (rows[0] if rows else {})}
    for row in rows:
        for key, value in row.items():
            finite = not isinstance(value, float) or math.isfinite(value)
            columns[key].append(value if finite else None)
    return columns


def mean_metric(rows: list[dict[str, float | str]], name: str = "dice") -> float:
    """Mean of a metric over the images where it is finite (NaN when none is)."""
    values = [float(r[name]) for r in rows if math.isfinite(float(r[name]))]
    return float(np.mean(values)) if values else float("nan")
