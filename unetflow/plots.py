"""PNG artifacts of a run: learning curves and validation predictions over their images.

matplotlib's Agg backend renders without a display (servers, CI, Ray workers).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from unetflow.evaluation import SplitPrediction


def learning_curves(history: dict[str, list[tuple[int, float]]], out: Path) -> Path:
    """Losses (left) and validation scores (right) per epoch.

    Args:
        history: metric name -> [(epoch, value), ...], e.g. from MLflow's metric history.
        out: PNG file to write.
    """
    fig, (loss_ax, score_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for name, points in sorted(history.items()):
        if not points:
            continue
        steps, values = zip(*sorted(points), strict=True)
        ax = loss_ax if "loss" in name else score_ax
        ax.plot(np.asarray(steps) + 1, values, marker="o", label=name)
    for ax, title in ((loss_ax, "loss"), (score_ax, "validation score")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def prediction_grid(prediction: SplitPrediction, out: Path, columns: int = 4) -> Path:
    """Each image (grey, first channel; middle slice in 3D) with the target outline in
    green and the predicted mask in red.
    """
    count = len(prediction.stems)
    if count == 0:
        raise ValueError("no images to plot")
    rows = (count + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[:count]):
        image, target, pred = _slice2d(prediction, i)
        ax.imshow(image, cmap="gray")
        ax.imshow(np.ma.masked_where(pred == 0, pred), cmap="autumn", alpha=0.45)
        if target.any():
            ax.contour(target > 0, levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_title(prediction.stems[i], fontsize=8)
    fig.suptitle("validation: prediction (red) vs target outline (green)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _slice2d(prediction: SplitPrediction, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image, target, pred = prediction.images[i][0], prediction.targets[i], prediction.preds[i]
    if image.ndim == 3:  # 3D volume: show the middle slice along the first axis
        mid = image.shape[0] // 2
        image, target, pred = image[mid], target[mid], pred[mid]
    return image, target, pred
