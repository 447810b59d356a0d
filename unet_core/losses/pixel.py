"""Per-pixel losses: (binary) cross-entropy and focal loss, mean over all elements."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from unet_core.losses.base import SegmentationLoss, broadcast_channels
from unet_core.losses.targets import Mode, drop_background, index_target, onehot_target


class CrossEntropyLoss(SegmentationLoss):
    """Cross-entropy on logits: BCE-with-logits for binary/multilabel, softmax CE for multiclass.

    Cross-entropy always covers every channel: softmax CE is defined over all classes, and
    MONAI's ``DiceCELoss`` does the same, so ``include_background`` is accepted (combos
    share it) but only affects the region and focal terms.

    Multiclass: ``F.cross_entropy`` on class indices, so ``class_weights`` give the usual
    weighted mean (divided by the summed weight of each pixel's target class).
    Binary/multilabel: mean over all ``B*C*spatial`` elements; ``class_weights`` scale each
    channel's elements and ``pos_weight`` scales the positive term (foreground pixels).

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        include_background: Accepted for combos; ignored here (see above).
        class_weights: One weight per channel, length C.
        pos_weight: Weight of positive pixels in BCE; ``> 1`` favours recall.
        label_smoothing: Multiclass only, as in ``torch.nn.CrossEntropyLoss``.
    """

    def __init__(
        self,
        mode: Mode = "binary",
        include_background: bool = True,
        class_weights: Sequence[float] | None = None,
        pos_weight: float | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(mode, include_background, class_weights)
        if pos_weight is not None and mode == "multiclass":
            raise ValueError(
                "pos_weight applies to sigmoid BCE; for mode='multiclass' use class_weights"
            )
        if label_smoothing and mode != "multiclass":
            raise ValueError("label_smoothing needs mode='multiclass'; drop it for sigmoid BCE")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.pos_weight = pos_weight
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            logits: ``[B, C, *spatial]`` raw scores.
            target: Any layout accepted for ``mode``.

        Returns:
            Scalar loss tensor.
        """
        logits = logits.float()
        weights = self.channel_weights(logits.shape[1], drop_background=False)
        if self.mode == "multiclass":
            index = index_target(target, logits)
            weight = None if weights is None else weights.to(logits)
            return F.cross_entropy(
                logits, index, weight=weight, label_smoothing=self.label_smoothing
            )
        dense = onehot_target(target, logits, self.mode)
        pos_weight = None
        if self.pos_weight is not None:
            pos_weight = torch.tensor(self.pos_weight, device=logits.device, dtype=logits.dtype)
        weight = None if weights is None else broadcast_channels(weights, logits)
        return F.binary_cross_entropy_with_logits(
            logits, dense, weight=weight, pos_weight=pos_weight
        )


class FocalLoss(SegmentationLoss):
    """Focal loss (Lin et al. 2017): cross-entropy scaled by ``(1 - p_t) ** gamma``.

    Binary/multilabel use the sigmoid form per channel, ``alpha`` weighting positives by
    ``alpha`` and negatives by ``1 - alpha``. Multiclass uses the softmax form over all C
    channels and then drops channel 0 if ``include_background=False``. (MONAI's
    ``FocalLoss(use_softmax=True, include_background=False)`` instead takes the softmax over
    the foreground channels only; with the background included the two agree.)
    Reduction: mean over all ``B*C*spatial`` elements, as MONAI.

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        include_background: Keep channel 0.
        class_weights: One weight per channel, length C; scales each channel's elements.
        gamma: Focusing parameter; 0 gives plain (B)CE.
        alpha: Sigmoid modes only: weight of positives in ``[0, 1]``.
    """

    def __init__(
        self,
        mode: Mode = "binary",
        include_background: bool = True,
        class_weights: Sequence[float] | None = None,
        gamma: float = 2.0,
        alpha: float | None = None,
    ) -> None:
        super().__init__(mode, include_background, class_weights)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if alpha is not None and mode == "multiclass":
            raise ValueError(
                "alpha is the sigmoid positive/negative balance; for mode='multiclass' "
                "weight classes with class_weights instead"
            )
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.gamma = float(gamma)
        self.alpha = alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            logits: ``[B, C, *spatial]`` raw scores.
            target: Any layout accepted for ``mode``.

        Returns:
            Scalar loss tensor.
        """
        logits = logits.float()
        dense = onehot_target(target, logits, self.mode)
        if self.mode == "multiclass":
            log_p = logits.log_softmax(dim=1)
            loss = -((1 - log_p.exp()) ** self.gamma) * log_p * dense
        else:
            loss = self._sigmoid_focal(logits, dense)
        drop = not self.include_background
        weights = self.channel_weights(logits.shape[1], drop)
        if drop:
            (loss,) = drop_background(loss)
        if weights is not None:
            loss = loss * broadcast_channels(weights, loss)
        return loss.mean()

    def _sigmoid_focal(self, logits: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits, dense, reduction="none")
        # log(1 - p_t) straight from the logits: no 1 - sigmoid() cancellation near p_t = 1.
        log_one_minus_pt = F.logsigmoid(-logits * (2 * dense - 1))
        loss = torch.exp(self.gamma * log_one_minus_pt) * bce
        if self.alpha is not None:
            loss = loss * (self.alpha * dense + (1 - self.alpha) * (1 - dense))
        return loss
