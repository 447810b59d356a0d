"""Soft region losses: Dice, Jaccard (soft IoU) and Tversky.

All three sum soft true positives, false positives and false negatives over the spatial
axes and differ only in how they score them, so each subclass overrides one hook,
``_score``. Reduction follows MONAI's default (``batch=False``): one score per sample and
class, multiplied by its class weight, then the plain mean over samples and classes.
With ``batch=True`` the counts are pooled over the batch first (one score per class).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from unet_core.losses.base import SegmentationLoss, spatial_dims
from unet_core.losses.targets import Mode, activate, drop_background, onehot_target


class SoftRegionLoss(SegmentationLoss):
    """Base for losses computed from soft tp / fp / fn counts.

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        include_background: Keep channel 0 (softmax is still taken over all channels).
        class_weights: One weight per channel, length C.
        smooth_nr: Added to the numerator; keeps the gradient alive on empty masks.
        smooth_dr: Added to the denominator; avoids 0/0 on empty masks.
        batch: Pool counts over the batch before scoring (one score per class).
    """

    def __init__(
        self,
        mode: Mode = "binary",
        include_background: bool = True,
        class_weights: Sequence[float] | None = None,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
    ) -> None:
        super().__init__(mode, include_background, class_weights)
        if smooth_nr < 0 or smooth_dr < 0:
            raise ValueError(f"smooth_nr and smooth_dr must be >= 0, got {smooth_nr}, {smooth_dr}")
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)
        self.batch = batch

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            logits: ``[B, C, *spatial]`` raw scores.
            target: Any layout accepted for ``mode``.

        Returns:
            Scalar loss tensor.
        """
        # Losses in float32 even under autocast: sums over a 3D volume overflow float16.
        logits = logits.float()
        target = onehot_target(target, logits, self.mode)
        probs = activate(logits, self.mode)
        drop = not self.include_background
        weights = self.channel_weights(logits.shape[1], drop)
        if drop:
            probs, target = drop_background(probs, target)
        dims = spatial_dims(probs, self.batch)
        tp = (probs * target).sum(dims)
        fp = probs.sum(dims) - tp
        fn = target.sum(dims) - tp
        per_class = self._score(tp, fp, fn)  # [B, C] or [C] with batch=True
        if weights is not None:
            per_class = per_class * weights.to(per_class)
        return per_class.mean()

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class DiceLoss(SoftRegionLoss):
    """Soft Dice loss: ``1 - (2 tp + smooth_nr) / (2 tp + fp + fn + smooth_dr)``.

    Matches ``monai.losses.DiceLoss`` with the same ``smooth_nr``/``smooth_dr``/``batch``.
    """

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        return 1 - (2 * tp + self.smooth_nr) / (2 * tp + fp + fn + self.smooth_dr)


class JaccardLoss(SoftRegionLoss):
    """Soft Jaccard (IoU) loss: ``1 - (tp + smooth_nr) / (tp + fp + fn + smooth_dr)``.

    MONAI's ``DiceLoss(jaccard=True)`` doubles numerator and denominator, so it equals
    this loss with its smoothing terms halved.
    """

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        return 1 - (tp + self.smooth_nr) / (tp + fp + fn + self.smooth_dr)


class TverskyLoss(SoftRegionLoss):
    """Tversky loss: ``1 - (tp + s_nr) / (tp + alpha fp + beta fn + s_dr)``.

    ``alpha = beta = 0.5`` is the Dice loss; ``beta > alpha`` penalises missed
    foreground more, which helps recall on small structures.

    Args:
        mode, include_background, class_weights, smooth_nr, smooth_dr, batch: As for
            :class:`SoftRegionLoss`.
        alpha: Weight of false positives.
        beta: Weight of false negatives.
    """

    def __init__(
        self,
        mode: Mode = "binary",
        include_background: bool = True,
        class_weights: Sequence[float] | None = None,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        alpha: float = 0.5,
        beta: float = 0.5,
    ) -> None:
        super().__init__(mode, include_background, class_weights, smooth_nr, smooth_dr, batch)
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        denominator = tp + self.alpha * fp + self.beta * fn + self.smooth_dr
        return 1 - (tp + self.smooth_nr) / denominator
