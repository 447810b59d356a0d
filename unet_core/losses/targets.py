"""Shared shape handling for losses and metrics: modes, target layouts, activations.

Every loss and metric in ``unet_core`` takes logits ``[B, C, *spatial]`` (2D or 3D) and a
target in one of the layouts below; this module turns both into the same dense form, so
the per-loss code only ever sees ``[B, C, *spatial]`` float tensors.

=============  ===========  =======================================================
mode           logits C     accepted target layouts
=============  ===========  =======================================================
``binary``     1            ``[B, 1, *spatial]`` or ``[B, *spatial]``, values 0/1
``multiclass`` >= 2         index ``[B, *spatial]`` or ``[B, 1, *spatial]`` (long),
                            or one-hot ``[B, C, *spatial]``
``multilabel`` >= 1         ``[B, C, *spatial]``, values 0/1 per channel
=============  ===========  =======================================================
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F

Mode = Literal["binary", "multiclass", "multilabel"]
MODES: tuple[str, ...] = get_args(Mode)


def check_mode(mode: str) -> Mode:
    """Return ``mode`` if it is a known mode, else raise with the valid choices.

    Args:
        mode: One of ``"binary"``, ``"multiclass"``, ``"multilabel"``.

    Returns:
        The same string, typed as :data:`Mode`.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {list(MODES)}")
    return mode  # type: ignore[return-value]


def check_logits(logits: torch.Tensor, mode: Mode) -> None:
    """Refuse logits whose channel count cannot belong to ``mode``.

    Args:
        logits: ``[B, C, *spatial]`` raw scores with 1 to 3 spatial dims.
        mode: The segmentation mode.
    """
    if logits.ndim < 3:
        raise ValueError(f"logits must be [B, C, *spatial], got shape {tuple(logits.shape)}")
    channels = logits.shape[1]
    if mode == "binary" and channels != 1:
        raise ValueError(
            f"mode='binary' needs logits with 1 channel, got {channels}; "
            "use mode='multiclass' (softmax) or mode='multilabel' (sigmoid per channel)"
        )
    if mode == "multiclass" and channels < 2:
        raise ValueError(
            "mode='multiclass' needs logits with at least 2 channels (background + classes), "
            f"got {channels}; use mode='binary' for a single foreground channel"
        )


def activate(logits: torch.Tensor, mode: Mode) -> torch.Tensor:
    """Turn logits into probabilities: softmax over channels for multiclass, else sigmoid.

    Args:
        logits: ``[B, C, *spatial]``.
        mode: The segmentation mode.

    Returns:
        ``[B, C, *spatial]`` probabilities, same dtype as ``logits``.
    """
    return torch.softmax(logits, dim=1) if mode == "multiclass" else torch.sigmoid(logits)


def index_target(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Return a multiclass target as class indices ``[B, *spatial]`` (long).

    Args:
        target: Index ``[B, *spatial]`` / ``[B, 1, *spatial]`` or one-hot ``[B, C, *spatial]``.
        logits: ``[B, C, *spatial]``; gives the expected layout.

    Returns:
        ``[B, *spatial]`` long tensor of class indices.
    """
    channels = logits.shape[1]
    if target.ndim == logits.ndim - 1:
        index = target
    elif target.ndim == logits.ndim and target.shape[1] == 1:
        index = target[:, 0]
    elif target.ndim == logits.ndim and target.shape[1] == channels:
        # One-hot input: argmax recovers the index without assuming a dtype.
        index = target.argmax(dim=1)
    else:
        raise ValueError(
            f"multiclass target shape {tuple(target.shape)} does not fit logits "
            f"{tuple(logits.shape)}; pass indices [B, *spatial] or one-hot [B, {channels}, *spatial]"
        )
    if index.shape[1:] != logits.shape[2:] or index.shape[0] != logits.shape[0]:
        raise ValueError(
            f"target spatial shape {tuple(index.shape)} does not match logits {tuple(logits.shape)}"
        )
    return index.long()


def onehot_target(target: torch.Tensor, logits: torch.Tensor, mode: Mode) -> torch.Tensor:
    """Return the target in the dense layout of ``logits``: ``[B, C, *spatial]``.

    Args:
        target: Any layout accepted for ``mode`` (see the module docstring).
        logits: ``[B, C, *spatial]`` logits the target is compared with.
        mode: The segmentation mode.

    Returns:
        ``[B, C, *spatial]`` tensor with the dtype of ``logits`` and values 0/1.
    """
    check_logits(logits, mode)
    if mode == "multiclass":
        index = index_target(target, logits)
        dense = F.one_hot(index, logits.shape[1]).movedim(-1, 1)
    elif mode == "binary" and target.ndim == logits.ndim - 1:
        dense = target.unsqueeze(1)
    else:
        dense = target
    if dense.shape != logits.shape:
        raise ValueError(
            f"mode={mode!r}: target shape {tuple(target.shape)} does not fit logits "
            f"{tuple(logits.shape)}; expected {tuple(logits.shape)}"
        )
    return dense.to(logits.dtype)


def drop_background(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Drop channel 0 of every ``[B, C, *spatial]`` tensor given.

    Args:
        *tensors: Tensors with a channel axis at dim 1.

    Returns:
        The same tensors as ``[B, C-1, *spatial]`` views.
    """
    return tuple(t[:, 1:] for t in tensors)
