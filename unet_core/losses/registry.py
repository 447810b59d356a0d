"""Loss registry: ``create_loss(name, **kwargs)`` and ``list_losses()``.

Every entry takes the shared options ``mode``, ``include_background`` and
``class_weights`` plus its own (see each class). Keyword arguments set to None are
dropped, so each default lives in one place (the loss's signature).

Deep supervision is an option of :func:`create_loss` rather than a separate registry
entry: ``create_loss("dice_bce", deep_supervision=True)`` wraps the loss in
:class:`~unet_core.losses.deep_supervision.DeepSupervisionLoss`, which accepts either a
tensor or the model's list of outputs.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict

from torch import nn

from unet_core.losses.combo import ComboLoss
from unet_core.losses.deep_supervision import DeepSupervisionLoss
from unet_core.losses.pixel import CrossEntropyLoss, FocalLoss
from unet_core.losses.region import DiceLoss, JaccardLoss, TverskyLoss
from unet_core.losses.targets import Mode

ComboSpec = Mapping[str, float] | Sequence[tuple[str, float] | tuple[str, float, Mapping[str, Any]]]


class _Shared(TypedDict):
    """The options that every term of a combined loss takes alike."""

    mode: Mode
    include_background: bool
    class_weights: Sequence[float] | None


def dice_bce(
    mode: Mode = "binary",
    include_background: bool = True,
    class_weights: Sequence[float] | None = None,
    lambda_dice: float = 1.0,
    lambda_bce: float = 1.0,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
    label_smoothing: float = 0.0,
) -> ComboLoss:
    """``lambda_dice * dice + lambda_bce * (b)ce``, as ``monai.losses.DiceCELoss``.

    ``class_weights`` (length C) go to both terms; Dice drops the background weight when
    ``include_background=False``, cross-entropy keeps every class.
    """
    common: _Shared = {
        "mode": mode,
        "include_background": include_background,
        "class_weights": class_weights,
    }
    dice = DiceLoss(**common, smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch)
    ce = CrossEntropyLoss(**common, label_smoothing=label_smoothing)
    return ComboLoss([("dice", lambda_dice, dice), ("bce", lambda_bce, ce)])


def dice_focal(
    mode: Mode = "binary",
    include_background: bool = True,
    class_weights: Sequence[float] | None = None,
    lambda_dice: float = 1.0,
    lambda_focal: float = 1.0,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
    gamma: float = 2.0,
    alpha: float | None = None,
) -> ComboLoss:
    """``lambda_dice * dice + lambda_focal * focal``, as ``monai.losses.DiceFocalLoss``."""
    common: _Shared = {
        "mode": mode,
        "include_background": include_background,
        "class_weights": class_weights,
    }
    dice = DiceLoss(**common, smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch)
    focal = FocalLoss(**common, gamma=gamma, alpha=alpha)
    return ComboLoss([("dice", lambda_dice, dice), ("focal", lambda_focal, focal)])


def combo(
    losses: ComboSpec,
    mode: Mode = "binary",
    include_background: bool = True,
    class_weights: Sequence[float] | None = None,
) -> ComboLoss:
    """Weighted sum of any registered losses sharing ``mode``/``include_background``/``class_weights``.

    Args:
        losses: ``{"dice": 1.0, "focal": 0.5}``, or a list of ``(name, weight)`` /
            ``(name, weight, kwargs)`` where ``kwargs`` are that loss's own options
            (``("tversky", 1.0, {"beta": 0.7})``). The shared options may not be repeated
            in ``kwargs``.
        mode: Shared by every term.
        include_background: Shared by every term.
        class_weights: Shared by every term.

    Returns:
        A :class:`ComboLoss` whose terms are named after the losses.
    """
    items = list(losses.items()) if isinstance(losses, Mapping) else list(losses)
    shared: _Shared = {
        "mode": mode,
        "include_background": include_background,
        "class_weights": class_weights,
    }
    terms = []
    for item in items:
        name, weight, own = (*item, {}) if len(item) == 2 else item
        if name == "combo":
            raise ValueError("a combo cannot contain 'combo'; list its terms directly")
        if "deep_supervision" in own or "deep_supervision_weights" in own:
            raise ValueError("set deep_supervision on the combo, not on its terms")
        clash = sorted(set(own) & set(shared))
        if clash:
            raise ValueError(
                f"combo term {name!r} repeats shared options {clash}; set them once on the combo"
            )
        terms.append((name, weight, create_loss(name, **shared, **own)))
    return ComboLoss(terms)


LOSSES: dict[str, Callable[..., nn.Module]] = {
    "bce": CrossEntropyLoss,
    "ce": CrossEntropyLoss,  # alias: softmax CE reads better than "bce" for multiclass
    "dice": DiceLoss,
    "jaccard": JaccardLoss,
    "focal": FocalLoss,
    "tversky": TverskyLoss,
    "dice_bce": dice_bce,
    "dice_focal": dice_focal,
    "combo": combo,
}


def list_losses(pattern: str | None = None) -> list[str]:
    """Sorted names of registered losses, optionally filtered by a glob ``pattern``.

    Args:
        pattern: Shell-style pattern such as ``"dice*"``; None lists all.

    Returns:
        Matching names.
    """
    names = sorted(LOSSES)
    return names if pattern is None else fnmatch.filter(names, pattern)


def accepted_options(name: str) -> list[str]:
    """Keyword options the loss ``name`` accepts (without the deep-supervision ones)."""
    return list(inspect.signature(_lookup(name)).parameters)


def _lookup(name: str) -> Callable[..., nn.Module]:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; valid names: {list_losses()}") from None


def create_loss(
    name: str,
    *,
    deep_supervision: bool = False,
    deep_supervision_weights: Sequence[float] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered loss by name.

    Args:
        name: A name from :func:`list_losses`.
        deep_supervision: Wrap the loss in :class:`DeepSupervisionLoss` so it also accepts
            the list of outputs of a deep-supervised model.
        deep_supervision_weights: Per-output weights (main first); None means halving per
            level, normalised. Needs ``deep_supervision=True``.
        **kwargs: Options of the loss; None values are dropped so defaults apply.

    Returns:
        The loss module; ``loss(logits, target)`` returns a scalar tensor.
    """
    factory = _lookup(name)
    options = {key: value for key, value in kwargs.items() if value is not None}
    unknown = sorted(set(options) - set(accepted_options(name)))
    if unknown:
        raise ValueError(
            f"loss {name!r} does not take {unknown}; it accepts {accepted_options(name)}"
        )
    if deep_supervision_weights is not None and not deep_supervision:
        raise ValueError("deep_supervision_weights needs deep_supervision=True")
    loss = factory(**options)
    return DeepSupervisionLoss(loss, deep_supervision_weights) if deep_supervision else loss
