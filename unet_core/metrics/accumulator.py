"""Streaming segmentation metrics whose state is a vector of sums, so it all-reduces exactly.

Averaging per-worker averages is wrong when workers see different numbers of pixels or
images; summing counts is not. ``MetricAccumulator.state`` is one float64 CPU tensor:

====================  ======  =========================================================
slice                 length  meaning (summed over every image seen)
====================  ======  =========================================================
tp, fp, fn, tn        C each  pixel counts per class (prediction vs ground truth)
dice_sum, iou_sum     C each  per-image Dice / IoU per class (empty-mask convention),
                              in fixed point (``SCORE_SCALE`` units) so sums are exact
images                1       number of images
====================  ======  =========================================================

Usage in distributed evaluation::

    acc.update(logits, target)            # per batch, on each worker
    torch.distributed.all_reduce(acc.state)  # in place, SUM, gloo on CPU
    metrics = acc.compute()
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unet_core.losses.targets import Mode, check_logits, check_mode, onehot_target

FIELDS = ("tp", "fp", "fn", "tn", "dice_sum", "iou_sum")
# Per-image scores are summed as integers in units of 2**-30: integer sums in float64 are
# exact up to 2**53, so the state does not depend on the order of additions (batches,
# workers, all_reduce) and two runs over the same images give bit-identical results.
# Resolution 1e-9 per image; exact for up to 2**23 (8 million) images.
SCORE_SCALE = 2.0**30


def ratio(num: torch.Tensor, den: torch.Tensor, absent: torch.Tensor) -> torch.Tensor:
    """Elementwise ``num / den``; where ``den == 0``: 1.0 if ``absent`` else 0.0.

    The empty-mask convention of :mod:`unet_core.metrics.functional`, vectorised.
    """
    fallback = absent.to(num.dtype)
    return torch.where(den > 0, num / den.clamp_min(1e-300), fallback)


# What compute() returns whatever the classes (per-class keys come on top for several).
SUMMARY_METRICS = (
    "dice",
    "iou",
    "precision",
    "recall",
    "pixel_accuracy",
    "dice_per_image",
    "iou_per_image",
)


class MetricAccumulator:
    """Accumulate Dice, IoU, pixel accuracy, precision and recall over batches.

    Global metrics come from counts summed over every pixel seen, per class, then
    averaged over the classes selected by ``include_background`` (macro average, as
    MONAI's ``ConfusionMatrixMetric(compute_sample=False)``). ``dice_per_image`` and
    ``iou_per_image`` average per-image scores instead (as MONAI's ``DiceMetric``
    with ``ignore_empty=False``).

    Args:
        num_classes: Number of output channels C (1 for binary).
        mode: ``"binary"`` (sigmoid > threshold), ``"multiclass"`` (argmax) or
            ``"multilabel"`` (sigmoid > threshold per channel).
        threshold: Probability at or above which a sigmoid output counts as foreground.
            Unused for multiclass.
        include_background: Average over channel 0 too. None picks the mode's meaning:
            False for multiclass (channel 0 is background), True otherwise (every channel
            is a foreground label). Per-class keys are reported for every class regardless.
    """

    def __init__(
        self,
        num_classes: int,
        mode: Mode = "binary",
        threshold: float = 0.5,
        include_background: bool | None = None,
    ) -> None:
        self.mode: Mode = check_mode(mode)
        if mode == "binary" and num_classes != 1:
            raise ValueError(
                f"mode='binary' has num_classes=1, got {num_classes}; use 'multiclass' or 'multilabel'"
            )
        if mode == "multiclass" and num_classes < 2:
            raise ValueError("mode='multiclass' needs num_classes >= 2 (background included)")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold is a probability in (0, 1), got {threshold}")
        if mode == "binary" and include_background is False:
            raise ValueError(
                "mode='binary' has only the foreground channel; leave include_background unset"
            )
        if include_background is None:
            include_background = mode != "multiclass"
        self.num_classes = num_classes
        self.threshold = float(threshold)
        self.include_background = include_background
        self.state = torch.zeros(len(FIELDS) * num_classes + 1, dtype=torch.float64)

    def reset(self) -> None:
        """Zero the state in place (the tensor object is kept)."""
        self.state.zero_()

    def _field(self, name: str) -> torch.Tensor:
        start = FIELDS.index(name) * self.num_classes
        return self.state[start : start + self.num_classes]

    @property
    def num_images(self) -> int:
        """Number of images accumulated so far."""
        return int(self.state[-1].item())

    def _masks(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        check_logits(logits, self.mode)
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits have {logits.shape[1]} channels, accumulator has num_classes={self.num_classes}"
            )
        if self.mode == "multiclass":
            pred = F.one_hot(logits.argmax(dim=1), self.num_classes).movedim(-1, 1).bool()
        else:
            pred = torch.sigmoid(logits.float()) >= self.threshold
        truth = onehot_target(target, logits.float(), self.mode) > 0.5
        return pred.flatten(2), truth.flatten(2)  # [B, C, N] each

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch.

        Args:
            logits: ``[B, C, *spatial]`` raw model outputs (2D or 3D).
            target: Any layout accepted for ``mode`` (see :mod:`unet_core.losses.targets`).
        """
        pred, truth = self._masks(logits.detach(), target.detach())
        tp = (pred & truth).sum(-1).double()  # [B, C]
        fp = (pred & ~truth).sum(-1).double()
        fn = (~pred & truth).sum(-1).double()
        tn = pred.shape[-1] - tp - fp - fn
        absent = (tp + fp + fn) == 0
        per_image = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
            "dice_sum": ratio(2 * tp, 2 * tp + fp + fn, absent),
            "iou_sum": ratio(tp, tp + fp + fn, absent),
        }
        for name in ("dice_sum", "iou_sum"):
            per_image[name] = torch.round(per_image[name] * SCORE_SCALE)
        for name, values in per_image.items():
            self._field(name).add_(values.sum(0).cpu())
        self.state[-1] += pred.shape[0]

    def _selected(self) -> slice:
        return slice(0, None) if self.include_background else slice(1, None)

    def compute(self) -> dict[str, float]:
        """Metrics from the (possibly all-reduced) state.

        Returns:
            ``dice``, ``iou``, ``precision``, ``recall`` (global counts, averaged over the
            selected classes), ``pixel_accuracy`` (fraction of correctly labelled pixels;
            multilabel: averaged over the selected channels), ``dice_per_image`` and
            ``iou_per_image`` (mean over images and selected classes of per-image scores),
            and, when ``num_classes > 1``, ``{dice,iou,precision,recall}_class{c}`` for
            every class c.
        """
        images = self.state[-1]
        if images == 0:
            raise RuntimeError("compute() called before any update(); nothing to average")
        tp, fp, fn, tn = (self._field(name) for name in ("tp", "fp", "fn", "tn"))
        absent = (tp + fp + fn) == 0
        per_class = {
            "dice": ratio(2 * tp, 2 * tp + fp + fn, absent),
            "iou": ratio(tp, tp + fp + fn, absent),
            "precision": ratio(tp, tp + fp, absent),
            "recall": ratio(tp, tp + fn, absent),
        }
        selected = self._selected()
        result = {name: float(values[selected].mean()) for name, values in per_class.items()}
        result["pixel_accuracy"] = self._pixel_accuracy(tp, fp, fn, tn)
        for name in ("dice", "iou"):
            mean_per_class = self._field(f"{name}_sum") / (SCORE_SCALE * images)
            result[f"{name}_per_image"] = float(mean_per_class[selected].mean())
        if self.num_classes > 1:
            for name, values in per_class.items():
                result.update({f"{name}_class{c}": float(v) for c, v in enumerate(values)})
        return result

    def _pixel_accuracy(
        self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, tn: torch.Tensor
    ) -> float:
        pixels = tp[0] + fp[0] + fn[0] + tn[0]
        if self.mode == "multiclass":
            # Each pixel is a true positive of exactly one class when labelled right.
            return float(tp.sum() / pixels)
        return float(((tp + tn) / pixels)[self._selected()].mean())
