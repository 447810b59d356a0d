"""Segmenter: inputs at another spacing than the training's are predicted on its grid."""

from __future__ import annotations

import torch
from torch import nn

from unet_core.models import get_model_config
from unet_core.package import InferenceSpec, Segmenter


class Levels(nn.Module):
    """Per-voxel multilabel logits: label 0 where x > 0.5, label 1 where x > 1.5."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))  # Segmenter finds the device here

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x - 0.5, x - 1.5], dim=1) * self.scale


def test_multilabel_masks_come_back_on_the_inputs_grid() -> None:
    spec = InferenceSpec((0.0,), (1.0,), mode="multilabel", target_spacing=(1.0, 1.0, 1.0))
    segmenter = Segmenter(Levels(), get_model_config("unet3d"), spec)
    image = torch.zeros(1, 1, 10, 24, 20)
    image[..., 2:8, 5:19, 4:16] = 1.0  # label 0 only
    image[..., 3:7, 8:16, 6:12] = 2.0  # both labels
    truth = segmenter(image)  # per-voxel model: the native grid's answer is exact
    moved = segmenter(image, spacing=(2.0, 0.6, 0.8))
    assert moved.shape == truth.shape == (1, 2, 10, 24, 20) and moved.dtype == torch.uint8
    assert (moved == truth).float().mean() > 0.95  # only box borders may move
    assert not torch.equal(moved, truth)  # it was predicted on the coarser grid
