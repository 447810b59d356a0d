"""U-Net++ (Zhou et al. 2018): nested, densely connected skip pathways.

Node X_{i,j} (level i, column j) sees every earlier node of its level and the
up-sampled node X_{i+1,j-1} below it:
``X_{i,j} = block(cat[X_{i,0}, ..., X_{i,j-1}, up(X_{i+1,j-1})])``; X_{i,0} is the encoder.
"""

from __future__ import annotations

import torch
from torch import nn

from unet_core.models.base import SegmentationModel
from unet_core.models.config import ModelConfig
from unet_core.models.layers import Upsample, make_block


class UNetPlusPlus(SegmentationModel):
    """U-Net++ with one full-resolution head per decoder depth under deep supervision.

    With ``deep_supervision`` the training forward returns ``depth`` outputs, all
    [B, out_channels, *S]: ``[X_{0,depth}, X_{0,depth-1}, ..., X_{0,1}]`` heads, the
    deepest (main) first and the shallowest sub-network last.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        widths = config.level_channels
        self.ups = nn.ModuleDict()
        self.nodes = nn.ModuleDict()
        for j in range(1, config.depth + 1):
            for i in range(config.depth - j + 1):
                self.ups[f"{i}_{j}"] = Upsample(config, widths[i + 1], widths[i], config.kernels[i])
                # j earlier nodes of width C_i plus the up-sampled one below.
                self.nodes[f"{i}_{j}"] = make_block(config, (j + 1) * widths[i], widths[i])

    def head_channels(self) -> list[int]:
        return [self.config.level_channels[0]] * self.config.depth

    def decode(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        grid: list[list[torch.Tensor]] = [[f] for f in features]  # grid[i][j] = X_{i,j}
        for j in range(1, self.config.depth + 1):
            for i in range(self.config.depth - j + 1):
                up = self.ups[f"{i}_{j}"](grid[i + 1][j - 1])
                grid[i].append(self.nodes[f"{i}_{j}"](torch.cat([*grid[i], up], dim=1)))
        return grid[0][:0:-1]  # X_{0,depth}, ..., X_{0,1}
