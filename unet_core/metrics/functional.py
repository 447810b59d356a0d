"""Overlap metrics on boolean masks, and the empty-mask convention shared by all of them.

Empty-mask convention (the same in :class:`~unet_core.metrics.MetricAccumulator`): a ratio
whose denominator is zero is **1.0 when the class is absent from both prediction and
ground truth** (nothing to find, nothing found: a perfect answer) and **0.0 otherwise**.
So with both masks empty Dice = IoU = precision = recall = 1; with exactly one empty,
Dice = IoU = 0, and precision (nothing predicted, something missed) or recall (nothing to
find, something predicted) is 0. This equals MONAI's ``DiceMetric(ignore_empty=False)``.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import torch

MaskLike: TypeAlias = np.ndarray | torch.Tensor


def as_bool_array(mask: MaskLike) -> np.ndarray:
    """Return ``mask`` as a numpy bool array (nonzero is foreground).

    Args:
        mask: numpy array or torch tensor of any shape, bool or numeric.

    Returns:
        numpy bool array of the same shape.
    """
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask).astype(bool, copy=False)


def confusion_counts(pred: MaskLike, target: MaskLike) -> tuple[int, int, int, int]:
    """Count true/false positives/negatives of one pair of masks.

    Args:
        pred: Predicted boolean mask, any shape.
        target: Ground-truth boolean mask, same shape.

    Returns:
        ``(tp, fp, fn, tn)``.
    """
    p, t = as_bool_array(pred), as_bool_array(target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    return tp, fp, fn, p.size - tp - fp - fn


def safe_ratio(numerator: float, denominator: float, absent: bool) -> float:
    """``numerator / denominator`` with the module's empty-mask convention.

    Args:
        numerator: Count in the numerator.
        denominator: Count in the denominator.
        absent: The class is absent from both prediction and ground truth.

    Returns:
        The ratio; 1.0 (absent) or 0.0 (otherwise) when ``denominator`` is 0.
    """
    if denominator > 0:
        return numerator / denominator
    return 1.0 if absent else 0.0


def dice_score(pred_mask: MaskLike, target_mask: MaskLike) -> float:
    """Dice ``2 tp / (2 tp + fp + fn)``; 1.0 when both masks are empty.

    Args:
        pred_mask: Boolean mask, any shape (numpy or torch).
        target_mask: Boolean mask of the same shape.

    Returns:
        Dice in ``[0, 1]``.
    """
    tp, fp, fn, _ = confusion_counts(pred_mask, target_mask)
    return safe_ratio(2 * tp, 2 * tp + fp + fn, absent=tp + fp + fn == 0)


def iou_score(pred_mask: MaskLike, target_mask: MaskLike) -> float:
    """IoU (Jaccard) ``tp / (tp + fp + fn)``; 1.0 when both masks are empty.

    Args:
        pred_mask: Boolean mask, any shape (numpy or torch).
        target_mask: Boolean mask of the same shape.

    Returns:
        IoU in ``[0, 1]``.
    """
    tp, fp, fn, _ = confusion_counts(pred_mask, target_mask)
    return safe_ratio(tp, tp + fp + fn, absent=tp + fp + fn == 0)


def precision_score(pred_mask: MaskLike, target_mask: MaskLike) -> float:
    """Precision ``tp / (tp + fp)``; empty prediction gives 1.0 only if the target is empty too.

    Args:
        pred_mask: Boolean mask, any shape (numpy or torch).
        target_mask: Boolean mask of the same shape.

    Returns:
        Precision in ``[0, 1]``.
    """
    tp, fp, fn, _ = confusion_counts(pred_mask, target_mask)
    return safe_ratio(tp, tp + fp, absent=tp + fp + fn == 0)


def recall_score(pred_mask: MaskLike, target_mask: MaskLike) -> float:
    """Recall ``tp / (tp + fn)``; empty target gives 1.0 only if the prediction is empty too.

    Args:
        pred_mask: Boolean mask, any shape (numpy or torch).
        target_mask: Boolean mask of the same shape.

    Returns:
        Recall in ``[0, 1]``.
    """
    tp, fp, fn, _ = confusion_counts(pred_mask, target_mask)
    return safe_ratio(tp, tp + fn, absent=tp + fp + fn == 0)


def pixel_accuracy(pred_mask: MaskLike, target_mask: MaskLike) -> float:
    """Fraction of pixels where the masks agree, ``(tp + tn) / N``.

    Args:
        pred_mask: Boolean mask, any shape (numpy or torch).
        target_mask: Boolean mask of the same shape.

    Returns:
        Accuracy in ``[0, 1]``.
    """
    tp, fp, fn, tn = confusion_counts(pred_mask, target_mask)
    return (tp + tn) / max(tp + fp + fn + tn, 1)
