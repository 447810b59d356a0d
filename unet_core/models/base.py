"""Shared encoder and the base class that fixes ``forward`` for every U-Net variant.

A variant only implements `SegmentationModel.decode` (encoder features in, decoder
features out); padding to a multiple of the total down-sampling per axis (``2**depth``
without ``pool_kernels``), the 1x1 heads, cropping back to the input size and the
deep-supervision contract live here once.
"""

from __future__ import annotations

import math
from types import EllipsisType

import torch
import torch.nn.functional as F
from torch import nn

from unet_core.models.config import ModelConfig
from unet_core.models.layers import conv, layer, make_block


class Encoder(nn.Module):
    """Contracting path: a block at level 0, then (max-pool -> block) per level.

    Each pool uses that level's kernel (``config.kernels``, 2 on every axis by default).
    Shapes: [B, in_channels, *S] -> list of ``depth + 1`` features, level ``i`` is
    [B, channels[i], *(S / level_factors[i])] (S a multiple of ``level_factors[-1]``).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        widths = config.level_channels
        pool = layer("max_pool", config.spatial_dims)
        self.pools = nn.ModuleList(pool(kernel) for kernel in config.kernels)
        self.blocks = nn.ModuleList([make_block(config, config.in_channels, widths[0])])
        for i in range(1, config.depth + 1):
            self.blocks.append(make_block(config, widths[i - 1], widths[i]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.blocks[0](x)]
        for pool, block in zip(self.pools, self.blocks[1:], strict=True):
            features.append(block(pool(features[-1])))
        return features


def pad_to_multiple(x: torch.Tensor, multiple: int | tuple[int, ...]) -> torch.Tensor:
    """Zero-pad the end of every spatial dim of x [B, C, *S] up to a multiple of
    ``multiple`` (one for all dims, or one per dim).

    Padding only at the end keeps the input's content at the origin of every level,
    so an output at level ``i`` is cropped back simply to ``ceil(S / factor_i)``. An
    input no larger than ``multiple`` in every dim gets one extra block in its last dim.
    """
    sizes = x.shape[2:]
    multiples = (multiple,) * len(sizes) if isinstance(multiple, int) else multiple
    pads: list[int] = []
    for size, m in zip(reversed(sizes), reversed(multiples), strict=True):  # last dim first
        pads += [0, -size % m]
    if all(s + p <= m for s, p, m in zip(sizes, pads[::-2], multiples, strict=True)):
        # A 1-voxel bottleneck breaks instance norm (and batch norm at batch size 1):
        # give the last dim one more block so the bottleneck has two voxels.
        pads[1] += multiples[-1]
    return F.pad(x, pads) if any(pads) else x


def crop_to(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Keep the leading ``size`` voxels of each spatial dim of x [B, C, *S]."""
    index: tuple[EllipsisType | slice, ...] = (..., *(slice(0, s) for s in size))
    return x[index]


class SegmentationModel(nn.Module):
    """Base of the U-Net family: encoder -> ``decode`` -> 1x1 heads, logits out.

    Subclasses build their decoder in ``__init__`` and implement `decode`.

    Attributes:
        config: the validated `ModelConfig` the model was built from.
        heads: 1x1 convs; ``heads[0]`` gives the main output, the others (only with
            deep supervision) the auxiliary outputs in `decode`'s order.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        widths = self.head_channels()
        self.heads = nn.ModuleList(
            conv(config, ch, config.out_channels, kernel=1, bias=True)
            for ch in (widths if config.deep_supervision else widths[:1])
        )

    def head_channels(self) -> list[int]:
        """Width of each feature map `decode` returns, in its order (uses only config)."""
        raise NotImplementedError

    def decode(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Turn encoder features (finest first) into decoder features for the heads.

        Returns:
            Main feature map first, then the deep-supervision ones (coarsest last).
        """
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Segment x [B, in_channels, *S] into logits [B, out_channels, *S].

        Returns:
            A Tensor; with ``deep_supervision`` in training mode a list whose element 0
            is the main output and the rest the auxiliary ones, each cropped to
            ``ceil(S / f)`` where ``f`` is its down-sampling factor.
        """
        size = tuple(x.shape[2:])
        padded = pad_to_multiple(x, self.config.level_factors[-1])
        decoded = self.decode(self.encoder(padded))
        wanted = len(self.heads) if self.training else 1
        outputs = []
        for head, feature in zip(self.heads[:wanted], decoded, strict=False):
            factors = [p // f for p, f in zip(padded.shape[2:], feature.shape[2:], strict=True)]
            crop = tuple(math.ceil(s / f) for s, f in zip(size, factors, strict=True))
            outputs.append(crop_to(head(feature), crop))
        if self.config.deep_supervision and self.training:
            return outputs
        return outputs[0]
