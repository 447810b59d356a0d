"""Base class for segmentation losses: mode, background handling and class weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unet_core.losses.targets import Mode, check_mode


class SegmentationLoss(nn.Module):
    """Shared options of every loss in this package; subclasses implement ``forward``.

    All losses take logits ``[B, C, *spatial]`` and a target in any layout accepted for
    ``mode`` (see :mod:`unet_core.losses.targets`) and return a scalar tensor.

    Args:
        mode: ``"binary"`` (sigmoid, C == 1), ``"multiclass"`` (softmax, C >= 2) or
            ``"multilabel"`` (sigmoid per channel).
        include_background: Keep channel 0 in the loss. ``False`` only makes sense when
            channel 0 is a background class, so it is refused for ``mode="binary"``.
        class_weights: One non-negative weight per output channel (length C, background
            included even when ``include_background=False``; the dropped entry follows the
            dropped channel). Refused for ``mode="binary"``, which has a single channel.
    """

    def __init__(
        self,
        mode: Mode = "binary",
        include_background: bool = True,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.mode: Mode = check_mode(mode)
        if mode == "binary" and not include_background:
            raise ValueError(
                "include_background=False drops channel 0, but mode='binary' has only the "
                "foreground channel; keep include_background=True or use mode='multiclass'"
            )
        if mode == "binary" and class_weights is not None:
            raise ValueError(
                "class_weights need several channels; mode='binary' has one. Drop class_weights "
                "(use pos_weight on 'bce' to weight foreground pixels) or use mode='multiclass'"
            )
        if class_weights is not None and min(class_weights) < 0:
            raise ValueError(f"class_weights must be non-negative, got {list(class_weights)}")
        self.include_background = include_background
        weights = (
            None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float)
        )
        self.class_weights: torch.Tensor | None
        self.register_buffer("class_weights", weights)

    def channel_weights(self, num_channels: int, drop_background: bool) -> torch.Tensor | None:
        """Return the class weights for the channels a loss keeps, or None.

        Args:
            num_channels: C, the channel count of the logits.
            drop_background: Whether the caller drops channel 0.

        Returns:
            ``[C]`` or ``[C-1]`` float tensor, or None when no weights were given.
        """
        if self.class_weights is None:
            return None
        if self.class_weights.numel() != num_channels:
            raise ValueError(
                f"class_weights has {self.class_weights.numel()} entries but the logits have "
                f"{num_channels} channels; give one weight per channel, background included"
            )
        return self.class_weights[1:] if drop_background else self.class_weights

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, include_background={self.include_background}"


def spatial_dims(tensor: torch.Tensor, batch: bool) -> list[int]:
    """Axes to sum over: the spatial axes, plus the batch axis when ``batch`` is True.

    Args:
        tensor: ``[B, C, *spatial]``.
        batch: Pool the batch before dividing (one score per class) instead of one score
            per sample and class.

    Returns:
        The list of dims to reduce.
    """
    dims = list(range(2, tensor.ndim))
    return [0, *dims] if batch else dims


def broadcast_channels(weights: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape ``[C]`` weights to ``[1, C, 1, ...]`` so they broadcast against ``like``.

    Args:
        weights: ``[C]``.
        like: ``[B, C, *spatial]``.

    Returns:
        ``[1, C, 1, ..., 1]`` tensor on the device and dtype of ``like``.
    """
    shape = [1, -1] + [1] * (like.ndim - 2)
    return weights.to(like).view(shape)
