"""U-Net with concatenated skips (Ronneberger et al. 2015), optionally attention-gated.

Covers the ``unet``, ``classic_unet``, ``attention_unet``, ``resunet`` and ``unet3d``
presets: they differ only in their `ModelConfig`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from unet_core.models.base import SegmentationModel, crop_to
from unet_core.models.config import ModelConfig
from unet_core.models.layers import AttentionGate, Upsample, make_block


class UpStage(nn.Module):
    """One decoder level: up-sample, (gate the skip), concatenate, block.

    Shapes: x [B, C_{i+1}, *(S / kernel)], skip [B, C_i, *S] -> [B, C_i, *S]; also
    returns the attention coefficients [B, 1, *S] (None without gates).
    """

    def __init__(
        self, config: ModelConfig, coarse_ch: int, fine_ch: int, kernel: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.up = Upsample(config, coarse_ch, fine_ch, kernel)
        self.gate = (
            AttentionGate(config, fine_ch, coarse_ch, kernel) if config.attention_gates else None
        )
        self.block = make_block(config, 2 * fine_ch, fine_ch)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        alpha = None
        if self.gate is not None:
            # The coarser decoder feature is the gating signal, as in Oktay et al.
            skip, alpha = self.gate(skip, x)
        return self.block(torch.cat([skip, self.up(x)], dim=1)), alpha


class UNet(SegmentationModel):
    """U-Net: encoder, one `UpStage` per level, 1x1 head(s).

    With ``deep_supervision`` there is one head per decoder level 0..depth-1, so the
    training forward returns ``depth`` outputs, level ``i`` at ``ceil(S / 2**i)``.

    Attributes:
        last_attention_maps: with ``attention_gates``, after each forward, one
            detached coefficient map per skip, finest first: level ``i`` is
            [B, 1, *ceil(S / 2**i)] with values in [0, 1]. Empty otherwise, and not
            updated inside ``torch.compile``/``torch.export`` graphs.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        widths = config.level_channels
        self.stages = nn.ModuleList(
            UpStage(config, widths[i + 1], widths[i], config.kernels[i])
            for i in range(config.depth)
        )
        self.last_attention_maps: list[torch.Tensor] = []
        self._maps: list[torch.Tensor] = []

    def head_channels(self) -> list[int]:
        return list(self.config.level_channels[: self.config.depth])

    def decode(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        x = features[-1]
        decoded: list[torch.Tensor] = []
        maps: list[torch.Tensor] = []
        for level in reversed(range(self.config.depth)):
            x, alpha = self.stages[level](x, features[level])
            decoded.append(x)
            if alpha is not None:
                maps.append(alpha.detach())
        if not torch.compiler.is_compiling():
            # Kept for inspection only; skipped while tracing so export sees a pure graph.
            self._maps = maps[::-1]
        return decoded[::-1]  # finest (main) first, coarsest last

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """As `SegmentationModel.forward`; also records `last_attention_maps`."""
        out = super().forward(x)
        if not torch.compiler.is_compiling():
            size, factors = x.shape[2:], self.config.level_factors
            self.last_attention_maps = [
                crop_to(alpha, tuple(math.ceil(s / f) for s, f in zip(size, scale, strict=True)))
                for alpha, scale in zip(self._maps, factors, strict=False)
            ]
            self._maps = []
        return out
