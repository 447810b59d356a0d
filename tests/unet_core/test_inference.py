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


class Ramp(nn.Module):
    """Output = horizontal position inside the window it sees: differs at tile borders."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-1, 1, x.shape[-1]).expand_as(x[:, :1])
        return ramp.contiguous()


def test_gaussian_blending_favours_tile_centres() -> None:
    # Two 16-wide tiles over 24 columns overlap on columns 8..15. In the overlap the
    # left tile sees its right half (ramp > 0) and the right tile its left half (< 0);
    # the Gaussian weight makes column 8 follow the left tile, where it is more central.
    x = torch.zeros(1, 1, 1, 24)
    out = sliding_window(Ramp(), x, (1, 16), overlap=0.5)
    assert out[0, 0, 0, 8] > 0 > out[0, 0, 0, 15]
    uniform = (Ramp()(x[..., :16])[0, 0, 0, 8] + Ramp()(x[..., 8:])[0, 0, 0, 0]) / 2
    assert out[0, 0, 0, 8] > uniform  # plain averaging would give the border more say


def test_tta_3d_and_multilabel_masks() -> None:
    x = torch.randn(2, 2, 6, 5, 4)
    torch.testing.assert_close(predict_logits(Pointwise(), x, tta=True), Pointwise()(x))
    masks = logits_to_mask(torch.tensor([[[[1.0]], [[-1.0]]]]), "multilabel")
    assert masks.shape == (1, 2, 1, 1) and masks.flatten().tolist() == [1, 0]
