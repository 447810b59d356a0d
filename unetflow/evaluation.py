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
    """Raw images, targets and predicted masks of one split (numpy, CPU), one per case
    (cases may differ in shape)."""

    stems: list[str]
    images: list[np.ndarray]  # [C, *spatial] raw intensities
    targets: list[np.ndarray]  # [*spatial] label maps
    preds: list[np.ndarray]  # [*spatial] uint8 label maps


def predict_split(
    segmenter: Segmenter,
    data_dir: str | Path,
    split: str,
    limit: int | None = None,
    batch_size: int = 8,
    accumulator: MetricAccumulator | None = None,
) -> SplitPrediction:
    """Predict masks for (the first `limit` cases of) a split, as the model is served.

    Cases are read one at a time; consecutive cases of one shape share a batch.

    Args:
        accumulator: also fed every batch's logits and targets, so the split's global
            metrics come from this same pass (a large 3D test set is read and predicted
            once, not once per consumer). Build it with the spec's mode and threshold.
    """
    if segmenter.spec.mode == "multilabel":
        raise ValueError("per-image evaluation supports binary and multiclass models only")
    data = PreparedDataset(data_dir, split, normalize=False)
    count = len(data) if limit is None else min(limit, len(data))
    images, targets, preds = [], [], []
    start = 0
    while start < count:
        first = data.raw(start)
        batch = [first]
        while start + len(batch) < count and len(batch) < batch_size:
            nxt = data.raw(start + len(batch))
            if nxt[1].shape != first[1].shape:
                break
            batch.append(nxt)
        logits = segmenter.logits(torch.from_numpy(np.stack([b[0] for b in batch])))
        truth = np.stack([b[1] for b in batch])
        if accumulator is not None:
            accumulator.update(logits.cpu(), torch.from_numpy(truth.astype(np.int64)))
        images += [b[0] for b in batch]
        targets += [b[1] for b in batch]
        preds += list(segmenter.masks(logits).cpu().numpy())
        start += len(batch)
    return SplitPrediction([str(s) for s in data.stems[:count]], images, targets, preds)


def per_image_table(
    prediction: SplitPrediction, num_classes: int, metrics: tuple[str, ...] = TABLE_METRICS
) -> list[dict[str, float | str]]:
    """One row per image: `image` (its stem) and each metric (HD95 in pixels)."""
    rows = []
    for pred, target in zip(prediction.preds, prediction.targets, strict=True):
        if num_classes <= 1:  # binary: foreground is any non-zero label
            rows += per_image_metrics(pred[None] > 0, target[None] > 0, metrics=list(metrics))
        else:
            rows += per_image_metrics(
                pred[None], target[None], num_classes=num_classes, metrics=list(metrics)
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
