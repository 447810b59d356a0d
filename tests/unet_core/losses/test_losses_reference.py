"""Every loss against MONAI's implementation (the reference oracle) on random inputs."""

from __future__ import annotations

import monai.losses as ml
import pytest
import torch

from unet_core.losses import create_loss

TOL = dict(rtol=1e-5, atol=1e-5)
SPATIAL = {"2d": (9, 7), "3d": (5, 6, 7)}  # odd sizes on purpose
CASES = [
    ("binary", 1, "2d"),
    ("binary", 1, "3d"),
    ("multiclass", 4, "2d"),
    ("multiclass", 3, "3d"),
    ("multilabel", 3, "2d"),
    ("multilabel", 2, "3d"),
]


def make_inputs(mode: str, channels: int, dims: str, seed: int = 0):
    """Logits [B, C, *spatial] and a target in MONAI's B1/BC layout."""
    gen = torch.Generator().manual_seed(seed)
    shape = (3, channels, *SPATIAL[dims])
    logits = 2 * torch.randn(shape, generator=gen)
    if mode == "multiclass":
        target = torch.randint(0, channels, (3, 1, *SPATIAL[dims]), generator=gen)
    else:
        target = torch.randint(0, 2, shape, generator=gen).float()
    return logits, target


def monai_act(mode: str) -> dict:
    if mode == "multiclass":
        return {"softmax": True, "to_onehot_y": True}
    return {"sigmoid": True}


def loss_value(name: str, logits, target, **kw) -> torch.Tensor:
    return create_loss(name, **kw)(logits, target)


def background_options(mode: str) -> list[bool]:
    return [True] if mode == "binary" else [True, False]


@pytest.mark.parametrize(("mode", "channels", "dims"), CASES)
@pytest.mark.parametrize("batch", [False, True])
def test_dice_matches_monai(mode, channels, dims, batch):
    logits, target = make_inputs(mode, channels, dims)
    for ib in background_options(mode):
        ours = loss_value("dice", logits, target, mode=mode, include_background=ib, batch=batch)
        ref = ml.DiceLoss(**monai_act(mode), include_background=ib, batch=batch)(logits, target)
        torch.testing.assert_close(ours, ref, **TOL)


@pytest.mark.parametrize(("mode", "channels", "dims"), CASES)
def test_dice_smoothing_and_class_weights_match_monai(mode, channels, dims):
    logits, target = make_inputs(mode, channels, dims, seed=1)
    weights = [0.5 + i for i in range(channels)] if mode != "binary" else None
    for ib in background_options(mode):
        ours = loss_value(
            "dice",
            logits,
            target,
            mode=mode,
            include_background=ib,
            class_weights=weights,
            smooth_nr=0.1,
            smooth_dr=0.3,
        )
        ref_w = None if weights is None else (weights if ib else weights[1:])
        ref = ml.DiceLoss(
            **monai_act(mode), include_background=ib, weight=ref_w, smooth_nr=0.1, smooth_dr=0.3
        )(logits, target)
        if ref_w is not None and len(ref_w) == 1:
            ref = ref * ref_w[0]  # MONAI skips the weight when one channel is left; we apply it
        torch.testing.assert_close(ours, ref, **TOL)


@pytest.mark.parametrize(("mode", "channels", "dims"), CASES)
def test_jaccard_matches_monai_with_halved_smoothing(mode, channels, dims):
    logits, target = make_inputs(mode, channels, dims, seed=2)
    for ib in background_options(mode):
        ours = loss_value(
            "jaccard",
            logits,
            target,
            mode=mode,
            include_background=ib,
            smooth_nr=0.5,
            smooth_dr=1.0,
        )
        # MONAI's jaccard doubles numerator and denominator, smoothing included.
        ref = ml.DiceLoss(
            **monai_act(mode), jaccard=True, include_background=ib, smooth_nr=1.0, smooth_dr=2.0
        )(logits, target)
        torch.testing.assert_close(ours, ref, **TOL)


@pytest.mark.parametrize(("mode", "channels", "dims"), CASES)
@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.5), (0.3, 0.7)])
def test_tversky_matches_monai(mode, channels, dims, alpha, beta):
    logits, target = make_inputs(mode, channels, dims, seed=3)
    for ib in background_options(mode):
        ours = loss_value(
            "tversky", logits, target, mode=mode, include_background=ib, alpha=alpha, beta=beta
        )
        ref = ml.TverskyLoss(**monai_act(mode), include_background=ib, alpha=alpha, beta=beta)(
            logits, target
        )
        torch.testing.assert_close(ours, ref, **TOL)


@pytest.mark.parametrize(("mode", "channels", "dims"), [c for c in CASES if c[0] != "multiclass"])
@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, None), (0.0, None), (1.5, 0.25)])
def test_sigmoid_focal_matches_monai(mode, channels, dims, gamma, alpha):
    logits, target = make_inputs(mode, channels, dims, seed=4)
    for ib in background_options(mode):
        ours = loss_value(
            "focal", logits, target, mode=mode, include_background=ib, gamma=gamma, alpha=alpha
        )
        ref = ml.FocalLoss(include_background=ib, gamma=gamma, alpha=alpha)(logits, target)
        torch.testing.assert_close(ours, ref, **TOL)


@pytest.mark.parametrize(("mode", "channels", "dims"), [c for c in CASES if c[0] == "multiclass"])
def test_softmax_focal_matches_monai_with_background(mode, channels, dims):
    logits, target = make_inputs(mode, channels, dims, seed=5)
    weights = [1.0 + i for i in range(channels)]
    ours = loss_value("focal", logits, target, mode=mode, class_weights=weights)
    ref = ml.FocalLoss(use_softmax=True, to_onehot_y=True, weight=weights)(logits, target)
    torch.testing.assert_close(ours, ref, **TOL)


def test_softmax_focal_without_background_keeps_softmax_over_all_classes():
    # Documented deviation from MONAI (which re-normalises over foreground channels only).
    logits, target = make_inputs("multiclass", 4, "2d", seed=6)
    ours = loss_value(
        "focal", logits, target, mode="multiclass", include_background=False, gamma=2.0
    )
    onehot = torch.nn.functional.one_hot(target[:, 0], 4).movedim(-1, 1).float()
    log_p = logits.log_softmax(1)
    expected = (-((1 - log_p.exp()) ** 2) * log_p * onehot)[:, 1:].mean()
    torch.testing.assert_close(ours, expected, **TOL)


def reference_dice_ce(mode: str, logits, target, **kw) -> torch.Tensor:
    """MONAI's DiceCELoss, except multilabel: MONAI has no per-channel BCE there."""
    if mode != "multilabel":
        return ml.DiceCELoss(**monai_act(mode), **kw)(logits, target)
    dice = ml.DiceLoss(sigmoid=True, include_background=kw.get("include_background", True))
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    return kw.get("lambda_dice", 1.0) * dice(logits, target) + kw.get("lambda_ce", 1.0) * bce


@pytest.mark.parametrize(("mode", "channels", "dims"), CASES)
def test_dice_bce_matches_monai_dice_ce(mode, channels, dims):
    logits, target = make_inputs(mode, channels, dims, seed=7)
    for ib in background_options(mode):
        kw = dict(mode=mode, include_background=ib, lambda_dice=0.7, lambda_bce=1.3)
        ref_kw = dict(include_background=ib, lambda_dice=0.7, lambda_ce=1.3)
        if mode == "multiclass":  # class weights: same meaning in both for softmax CE
            kw["class_weights"] = [0.5 + i for i in range(channels)]
            ref_kw["weight"] = torch.tensor(kw["class_weights"])
        ours = loss_value("dice_bce", logits, target, **kw)
        ref = reference_dice_ce(mode, logits, target, **ref_kw)
        torch.testing.assert_close(ours, ref, **TOL)


@pytest.mark.parametrize(("mode", "channels", "dims"), CASES)
def test_bce_alone_matches_monai_ce_term(mode, channels, dims):
    logits, target = make_inputs(mode, channels, dims, seed=8)
    ours = loss_value("bce", logits, target, mode=mode)
    ref = reference_dice_ce(mode, logits, target, lambda_dice=0.0)
    torch.testing.assert_close(ours, ref, **TOL)


@pytest.mark.parametrize(("mode", "channels", "dims"), [c for c in CASES if c[0] != "multiclass"])
def test_dice_focal_matches_monai(mode, channels, dims):
    logits, target = make_inputs(mode, channels, dims, seed=9)
    for ib in background_options(mode):
        ours = loss_value(
            "dice_focal",
            logits,
            target,
            mode=mode,
            include_background=ib,
            gamma=1.5,
            lambda_focal=2.0,
        )
        ref = ml.DiceFocalLoss(sigmoid=True, include_background=ib, gamma=1.5, lambda_focal=2.0)(
            logits, target
        )
        torch.testing.assert_close(ours, ref, **TOL)


def test_multiclass_dice_focal_is_softmax_dice_plus_softmax_focal():
    # MONAI's DiceFocalLoss always uses the sigmoid focal term; ours follows the mode.
    logits, target = make_inputs("multiclass", 3, "3d", seed=10)
    ours = loss_value("dice_focal", logits, target, mode="multiclass", lambda_focal=0.5)
    dice = ml.DiceLoss(softmax=True, to_onehot_y=True)(logits, target)
    focal = ml.FocalLoss(use_softmax=True, to_onehot_y=True)(logits, target)
    torch.testing.assert_close(ours, dice + 0.5 * focal, **TOL)


def test_combo_equals_weighted_sum_of_monai_terms():
    logits, target = make_inputs("binary", 1, "2d", seed=11)
    loss = create_loss(
        "combo", losses=[("dice", 1.0), ("tversky", 0.5, {"beta": 0.7}), ("focal", 0.25)]
    )
    expected = (
        ml.DiceLoss(sigmoid=True)(logits, target)
        + 0.5 * ml.TverskyLoss(sigmoid=True, alpha=0.5, beta=0.7)(logits, target)
        + 0.25 * ml.FocalLoss()(logits, target)
    )
    torch.testing.assert_close(loss(logits, target), expected, **TOL)
