from __future__ import annotations

import pytest
import torch
from torch import nn

from unet_core.inference import gaussian_weight, logits_to_mask, predict_logits, sliding_window


class Pointwise(nn.Module):
    """A per-pixel model: tiling must reproduce its whole-image output exactly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3 * x[:, :1] - 1


@pytest.mark.parametrize(
    "shape,patch", [((1, 1, 45, 37), (16, 16)), ((2, 1, 19, 21, 23), (8, 8, 8))]
)
def test_sliding_window_equals_whole_image_for_pointwise_model(shape, patch) -> None:
    x = torch.randn(shape)
    tiled = sliding_window(Pointwise(), x, patch, overlap=0.5)
    torch.testing.assert_close(tiled, Pointwise()(x))


def test_gaussian_weight_peaks_in_the_centre() -> None:
    w = gaussian_weight((9, 9))
    assert w[4, 4] == w.max() and w.min() > 0


def test_tta_of_flip_equivariant_model_is_identity() -> None:
    x = torch.randn(1, 1, 12, 10)
    torch.testing.assert_close(predict_logits(Pointwise(), x, tta=True), Pointwise()(x))


def test_logits_to_mask_modes() -> None:
    logits = torch.tensor([[[[-2.0, 3.0]]]])
    assert logits_to_mask(logits).tolist() == [[[0, 1]]]
    multi = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])
    assert logits_to_mask(multi, "multiclass").tolist() == [[[0, 1]]]


def test_overlap_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        sliding_window(Pointwise(), torch.zeros(1, 1, 8, 8), (4, 4), overlap=1.0)
