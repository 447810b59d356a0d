"""Deep supervision: a weighted loss over the main output and lower-resolution auxiliaries."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def halving_weights(num_outputs: int) -> list[float]:
    """nnU-Net's deep-supervision weights: ``1, 1/2, 1/4, ...`` normalised to sum to 1.

    Args:
        num_outputs: Number of outputs, main output first.

    Returns:
        ``num_outputs`` weights summing to 1.
    """
    raw = [0.5**level for level in range(num_outputs)]
    total = sum(raw)
    return [w / total for w in raw]


def resize_target(target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Resize a target to the spatial size of ``like`` by nearest-neighbour sampling.

    Labels must not be blended, hence nearest. ``"nearest-exact"`` samples the source voxel
    whose centre is closest (for a factor of 2: voxels 1, 3, 5, ...), which is symmetric;
    plain ``"nearest"`` would always take the top-left voxel of each block.

    Args:
        target: ``[B, *spatial]`` or ``[B, C', *spatial]`` labels (any dtype).
        like: ``[B, C, *spatial_out]`` output the target is compared with.

    Returns:
        The target with ``spatial_out`` in place of ``spatial``, same layout and dtype.
    """
    size = like.shape[2:]
    has_channel = target.ndim == like.ndim
    if target.shape[-len(size) :] == size:
        return target
    batched = target if has_channel else target.unsqueeze(1)
    # interpolate needs floats; labels are small integers, so the round trip is exact.
    resized = F.interpolate(batched.float(), size=tuple(size), mode="nearest-exact")
    resized = resized.to(target.dtype)
    return resized if has_channel else resized[:, 0]


class DeepSupervisionLoss(nn.Module):
    """Apply ``base_loss`` to every output of a deep-supervised model and weight the results.

    A model with deep supervision returns, in training mode, ``[main, aux1, aux2, ...]``
    where ``main`` has full resolution and auxiliaries may be smaller. The target is resized
    to each output with nearest-neighbour sampling (:func:`resize_target`). A plain tensor
    (eval mode, or a model without deep supervision) is passed straight to ``base_loss``.

    Args:
        base_loss: Any loss taking ``(logits, target)``.
        weights: One weight per output, main first, used as given. None: halving per level,
            normalised to sum to 1 (:func:`halving_weights`, as nnU-Net), computed from the
            number of outputs at each call.
    """

    def __init__(self, base_loss: nn.Module, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if weights is not None and (len(weights) == 0 or min(weights) < 0):
            raise ValueError(f"deep supervision weights must be non-empty and >= 0, got {weights}")
        self.base_loss = base_loss
        self.weights = None if weights is None else [float(w) for w in weights]

    def forward(
        self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        """Compute the (weighted) loss.

        Args:
            outputs: ``[B, C, *spatial]`` logits, or a list of them, main output first.
            target: Target at the resolution of the main output, any layout ``base_loss``
                accepts.

        Returns:
            Scalar loss tensor.
        """
        if isinstance(outputs, torch.Tensor):
            return self.base_loss(outputs, target)
        outputs = list(outputs)
        weights = self.weights if self.weights is not None else halving_weights(len(outputs))
        if len(weights) != len(outputs):
            raise ValueError(
                f"got {len(outputs)} outputs but {len(weights)} deep supervision weights; "
                "give one weight per output or leave weights=None"
            )
        total = outputs[0].new_zeros((), dtype=torch.float)
        for weight, output in zip(weights, outputs, strict=True):
            if weight:
                total = total + weight * self.base_loss(output, resize_target(target, output))
        return total

    def extra_repr(self) -> str:
        return f"weights={self.weights or 'halving'}"
