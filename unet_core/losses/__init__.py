"""Segmentation losses on logits, for binary, multiclass and multilabel segmentation.

``create_loss(name, **kwargs)`` builds any registered loss; ``list_losses()`` names them.
Every loss maps ``(logits [B, C, *spatial], target) -> scalar Tensor``; target layouts per
mode are listed in :mod:`unet_core.losses.targets`.
"""

from __future__ import annotations

from unet_core.losses.base import SegmentationLoss
from unet_core.losses.combo import ComboLoss
from unet_core.losses.config import LossConfig, LossTerm, create_loss_from_config
from unet_core.losses.deep_supervision import DeepSupervisionLoss, halving_weights, resize_target
from unet_core.losses.pixel import CrossEntropyLoss, FocalLoss
from unet_core.losses.region import DiceLoss, JaccardLoss, SoftRegionLoss, TverskyLoss
from unet_core.losses.registry import LOSSES, combo, create_loss, dice_bce, dice_focal, list_losses
from unet_core.losses.targets import MODES, Mode

__all__ = [
    "LOSSES",
    "MODES",
    "ComboLoss",
    "CrossEntropyLoss",
    "DeepSupervisionLoss",
    "DiceLoss",
    "FocalLoss",
    "JaccardLoss",
    "LossConfig",
    "LossTerm",
    "Mode",
    "SegmentationLoss",
    "SoftRegionLoss",
    "TverskyLoss",
    "combo",
    "create_loss",
    "create_loss_from_config",
    "dice_bce",
    "dice_focal",
    "halving_weights",
    "list_losses",
    "resize_target",
]
