"""Metrics against MONAI's implementations (the reference oracle) on random inputs."""

from __future__ import annotations

import warnings

import monai.metrics as mm
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from unet_core.metrics import MetricAccumulator, dice_score, hausdorff_distance, iou_score

CASES = [
    ("binary", 1, (17, 13)),
    ("binary", 1, (7, 9, 6)),
    ("multiclass", 4, (15, 12)),
    ("multiclass", 3, (8, 7, 9)),
    ("multilabel", 3, (16, 11)),
]
CM_NAMES = {
    "dice": "f1 score",
    "iou": "threat score",
    "precision": "precision",
    "recall": "sensitivity",
}


def make_batch(mode: str, channels: int, spatial: tuple[int, ...], seed: int = 0):
    """Logits [B, C, *spatial] with a MONAI-layout target (B1 index or BC masks)."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn((4, channels, *spatial), generator=gen)
    if mode == "multiclass":
        # Targets correlated with the logits so scores are neither 0 nor 1.
        noisy = logits + 1.5 * torch.randn(logits.shape, generator=gen)
        return logits, noisy.argmax(1, keepdim=True)
    noisy = logits + torch.randn(logits.shape, generator=gen)
    return logits, (noisy > 0).float()


def onehot_pred_and_target(mode, channels, logits, target):
    """The binarised [B, C, *spatial] tensors MONAI's metrics expect."""
    if mode == "multiclass":
        pred = F.one_hot(logits.argmax(1), channels).movedim(-1, 1).float()
        return pred, F.one_hot(target[:, 0], channels).movedim(-1, 1).float()
    return (torch.sigmoid(logits) >= 0.5).float(), target


@pytest.mark.parametrize(("mode", "channels", "spatial"), CASES)
def test_accumulator_matches_monai(mode, channels, spatial):
    logits, target = make_batch(mode, channels, spatial)
    include_bg = mode != "multiclass"
    acc = MetricAccumulator(channels, mode=mode)
    acc.update(logits, target)
    result = acc.compute()
    pred, truth = onehot_pred_and_target(mode, channels, logits, target)

    cm = mm.ConfusionMatrixMetric(
        include_background=include_bg, metric_name=list(CM_NAMES.values()), reduction="sum_batch"
    )
    cm(pred, truth)  # counts summed over the batch, metric per class: our "global" metrics
    for (ours, _), per_class in zip(CM_NAMES.items(), cm.aggregate(), strict=True):
        assert result[ours] == pytest.approx(float(per_class.mean()), abs=1e-6), ours
        if channels > 1:
            offset = 0 if include_bg else 1
            for c, value in enumerate(per_class.tolist(), start=offset):
                assert result[f"{ours}_class{c}"] == pytest.approx(value, abs=1e-6)

    dice = mm.DiceMetric(include_background=include_bg, reduction="mean", ignore_empty=False)
    dice(pred, truth)
    assert result["dice_per_image"] == pytest.approx(dice.aggregate().item(), abs=1e-6)
    iou = mm.MeanIoU(include_background=include_bg, reduction="mean", ignore_empty=False)
    iou(pred, truth)
    assert result["iou_per_image"] == pytest.approx(iou.aggregate().item(), abs=1e-6)


@pytest.mark.parametrize(("mode", "channels", "spatial"), CASES)
def test_pixel_accuracy(mode, channels, spatial):
    logits, target = make_batch(mode, channels, spatial, seed=1)
    acc = MetricAccumulator(channels, mode=mode)
    acc.update(logits, target)
    pred, truth = onehot_pred_and_target(mode, channels, logits, target)
    if mode == "multiclass":
        expected = (logits.argmax(1) == target[:, 0]).double().mean().item()
    else:  # MONAI's per-class accuracy from summed counts, averaged over channels
        cm = mm.ConfusionMatrixMetric(metric_name="accuracy", reduction="sum_batch")
        cm(pred, truth)
        expected = cm.aggregate()[0].mean().item()
    assert acc.compute()["pixel_accuracy"] == pytest.approx(expected, abs=1e-6)


def random_blob(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A smooth random mask: thresholded low-pass noise gives compact shapes with holes."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.0)
    return field > np.quantile(field, 0.6)


@pytest.mark.parametrize("shape", [(40, 33), (18, 21, 15)])
@pytest.mark.parametrize("percentile", [None, 95])
@pytest.mark.parametrize("spacing", [None, "anisotropic"])
def test_hausdorff_matches_monai(shape, percentile, spacing):
    rng = np.random.default_rng(len(shape) * 10 + (percentile or 0))
    spacing = None if spacing is None else [0.7, 1.3, 2.1][: len(shape)]
    pairs = [(random_blob(shape, rng), random_blob(shape, rng)) for _ in range(3)]
    pred = torch.from_numpy(np.stack([p for p, _ in pairs]))[:, None].float()
    truth = torch.from_numpy(np.stack([t for _, t in pairs]))[:, None].float()
    metric = mm.HausdorffDistanceMetric(percentile=percentile, reduction="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = metric(pred, truth, spacing=spacing)[:, 0]
    ours = [hausdorff_distance(p, t, percentile=percentile, spacing=spacing) for p, t in pairs]
    # The brief allows one voxel spacing; the implementations agree far more closely.
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape", [(25, 30), (10, 12, 9)])
def test_functional_dice_and_iou_match_monai(shape):
    rng = np.random.default_rng(3)
    pred, truth = random_blob(shape, rng), random_blob(shape, rng)
    as_batch = [torch.from_numpy(m)[None, None].float() for m in (pred, truth)]
    assert dice_score(pred, truth) == pytest.approx(mm.compute_dice(*as_batch).item(), abs=1e-6)
    assert iou_score(torch.from_numpy(pred), truth) == pytest.approx(
        mm.compute_iou(*as_batch).item(), abs=1e-6
    )
