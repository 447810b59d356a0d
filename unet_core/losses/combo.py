"""Weighted sums of losses, e.g. Dice + BCE."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ComboLoss(nn.Module):
    """``sum_i weight_i * loss_i(logits, target)`` over named terms.

    Args:
        terms: ``(name, weight, loss)`` triples; names must be unique (they label the
            per-term values of :meth:`components`), weights non-negative.
    """

    def __init__(self, terms: Sequence[tuple[str, float, nn.Module]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("a combo loss needs at least one term, e.g. {'dice': 1.0}")
        names = [name for name, _, _ in terms]
        if len(set(names)) != len(names):
            raise ValueError(f"combo term names must be unique, got {names}")
        weights = [float(weight) for _, weight, _ in terms]
        if min(weights) < 0:
            raise ValueError(
                f"combo weights must be >= 0, got {dict(zip(names, weights, strict=True))}"
            )
        self.weights = dict(zip(names, weights, strict=True))
        self.terms = nn.ModuleDict({name: loss for name, _, loss in terms})

    def components(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each term's unweighted value, for logging.

        Args:
            logits: ``[B, C, *spatial]``.
            target: Any layout accepted by the terms.

        Returns:
            ``{name: scalar tensor}``.
        """
        return {name: loss(logits, target) for name, loss in self.terms.items()}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted sum of the terms.

        Args:
            logits: ``[B, C, *spatial]``.
            target: Any layout accepted by the terms.

        Returns:
            Scalar loss tensor.
        """
        parts = self.components(logits, target)
        total = torch.zeros((), device=logits.device)
        for name, value in parts.items():
            total = total + self.weights[name] * value
        return total

    def extra_repr(self) -> str:
        return f"weights={self.weights}"
