"""Registry, configuration, target layouts, deep supervision and learning of the losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from unet_core.losses import (
    ComboLoss,
    DeepSupervisionLoss,
    LossConfig,
    create_loss,
    halving_weights,
    list_losses,
)

TOL = dict(rtol=1e-5, atol=1e-6)
COMBO_TERMS = {"dice": 1.0, "focal": 0.5}


def build(name: str, **kw) -> torch.nn.Module:
    if name == "combo":
        kw.setdefault("losses", COMBO_TERMS)
    return create_loss(name, **kw)


# --- registry and construction-time checks ---------------------------------------------


def test_list_losses_names_every_required_loss_and_filters():
    required = {"bce", "dice", "jaccard", "focal", "tversky", "dice_bce", "dice_focal", "combo"}
    assert required <= set(list_losses())
    assert list_losses("dice*") == ["dice", "dice_bce", "dice_focal"]


def test_unknown_loss_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown loss 'dyce'.*'dice'"):
        create_loss("dyce")


@pytest.mark.parametrize(
    ("name", "kw", "hint"),
    [
        ("dice", {"gamma": 2.0}, "it accepts"),
        ("dice", {"include_background": False}, "keep include_background=True"),
        ("dice", {"class_weights": [1.0]}, "mode='multiclass'"),
        ("focal", {"mode": "multiclass", "alpha": 0.25}, "class_weights"),
        ("bce", {"mode": "multiclass", "pos_weight": 2.0}, "class_weights"),
        ("bce", {"label_smoothing": 0.1}, "mode='multiclass'"),
        ("dice", {"mode": "softmax"}, "choose one of"),
        ("tversky", {"alpha": -1.0}, ">= 0"),
        ("dice", {"deep_supervision_weights": [1.0, 0.5]}, "deep_supervision=True"),
        ("combo", {"losses": {"combo": 1.0}}, "cannot contain"),
        ("combo", {"losses": [("dice", 1.0, {"mode": "binary"})]}, "set them once"),
        ("combo", {"losses": {"dice": -1.0}}, ">= 0"),
        ("combo", {"losses": [("dice", 1.0, {"deep_supervision": True})]}, "on the combo"),
    ],
)
def test_incompatible_options_are_refused_with_a_fix(name, kw, hint):
    with pytest.raises(ValueError, match=hint):
        create_loss(name, **kw)


def test_none_options_fall_back_to_defaults():
    loss = create_loss("focal", gamma=None, alpha=None)
    assert loss.gamma == 2.0 and loss.alpha is None


def test_wrong_channel_count_for_mode_is_explained():
    with pytest.raises(ValueError, match="mode='binary' needs logits with 1 channel"):
        create_loss("dice")(torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="one weight per channel"):
        create_loss("dice", mode="multiclass", class_weights=[1, 2])(
            torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long)
        )


# --- typed configuration ----------------------------------------------------------------


def test_loss_config_builds_the_same_loss_as_create_loss():
    cfg = LossConfig(
        name="dice_focal", mode="multiclass", include_background=False, params={"gamma": 1.0}
    )
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    direct = create_loss("dice_focal", mode="multiclass", include_background=False, gamma=1.0)
    torch.testing.assert_close(cfg.build()(logits, target), direct(logits, target))


def test_loss_config_combo_terms_and_deep_supervision():
    cfg = LossConfig.model_validate(
        {
            "name": "combo",
            "terms": [
                {"name": "dice"},
                {"name": "tversky", "weight": 0.5, "params": {"beta": 0.7}},
            ],
            "deep_supervision": True,
        }
    )
    loss = cfg.build()
    assert isinstance(loss, DeepSupervisionLoss) and isinstance(loss.base_loss, ComboLoss)
    assert loss.base_loss.weights == {"dice": 1.0, "tversky": 0.5}
    assert loss.base_loss.terms["tversky"].beta == 0.7


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "dyce"},
        {"name": "dice", "params": {"gamma": 2}},
        {"name": "combo"},
        {"name": "dice", "terms": [{"name": "dice"}]},
        {"name": "dice", "unknown_field": 1},
        {"name": "focal", "mode": "multiclass", "params": {"alpha": 0.5}},
    ],
)
def test_loss_config_rejects_bad_configs_at_the_edge(bad):
    with pytest.raises(ValidationError):
        LossConfig.model_validate(bad)


def test_loss_config_is_frozen():
    cfg = LossConfig()
    with pytest.raises(ValidationError):
        cfg.name = "dice"  # type: ignore[misc]


# --- target layouts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["dice", "jaccard", "tversky", "focal", "bce", "dice_bce", "dice_focal"]
)
def test_multiclass_target_layouts_agree(name):
    logits = torch.randn(2, 4, 6, 5, 7)
    index = torch.randint(0, 4, (2, 6, 5, 7))
    onehot = F.one_hot(index, 4).movedim(-1, 1).float()
    loss = create_loss(name, mode="multiclass")
    expected = loss(logits, index)
    for target in (index[:, None], onehot, index.float()):
        torch.testing.assert_close(loss(logits, target), expected, **TOL)


@pytest.mark.parametrize(
    "name", ["dice", "jaccard", "tversky", "focal", "bce", "dice_bce", "dice_focal"]
)
def test_binary_target_layouts_agree(name):
    logits = torch.randn(3, 1, 9, 7)
    mask = torch.randint(0, 2, (3, 9, 7))
    loss = create_loss(name)
    expected = loss(logits, mask[:, None].float())
    torch.testing.assert_close(loss(logits, mask), expected, **TOL)
    torch.testing.assert_close(loss(logits, mask.bool()), expected, **TOL)


def test_multilabel_bce_class_weights_scale_each_channel():
    logits, target = torch.randn(2, 3, 5, 5), torch.randint(0, 2, (2, 3, 5, 5)).float()
    weights = torch.tensor([0.2, 1.0, 3.0])
    ours = create_loss("bce", mode="multilabel", class_weights=weights.tolist())(logits, target)
    expected = F.binary_cross_entropy_with_logits(logits, target, weight=weights.view(1, 3, 1, 1))
    torch.testing.assert_close(ours, expected, **TOL)


def test_perfect_prediction_gives_near_zero_region_losses():
    index = torch.randint(0, 3, (2, 8, 8))
    logits = 50.0 * F.one_hot(index, 3).movedim(-1, 1).float()
    for name in ("dice", "jaccard", "tversky", "focal"):
        assert create_loss(name, mode="multiclass")(logits, index).item() < 1e-4, name


# --- deep supervision ---------------------------------------------------------------------


def test_halving_weights_are_normalised():
    assert halving_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    assert sum(halving_weights(5)) == pytest.approx(1.0)


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_deep_supervision_weights_lower_resolution_outputs(mode):
    channels = 1 if mode == "binary" else 3
    target = torch.randint(0, channels + (mode == "binary"), (2, 16, 16))
    outputs = [torch.randn(2, channels, 16 // s, 16 // s) for s in (1, 2, 4)]
    base = create_loss("dice_bce", mode=mode)
    loss = create_loss("dice_bce", mode=mode, deep_supervision=True)
    # nearest-exact picks the voxel at the centre of each block: offset s // 2, stride s.
    expected = sum(
        w * base(out, target[:, s // 2 :: s, s // 2 :: s])
        for w, out, s in zip([4 / 7, 2 / 7, 1 / 7], outputs, (1, 2, 4), strict=True)
    )
    torch.testing.assert_close(loss(outputs, target), expected, **TOL)


def test_deep_supervision_3d_channel_target_and_custom_weights():
    target = torch.randint(0, 2, (1, 2, 8, 8, 8)).float()  # multilabel [B, C, D, H, W]
    outputs = [torch.randn(1, 2, 8, 8, 8), torch.randn(1, 2, 4, 4, 4)]
    base = create_loss("dice", mode="multilabel")
    loss = DeepSupervisionLoss(base, weights=[1.0, 0.0])
    torch.testing.assert_close(loss(outputs, target), base(outputs[0], target), **TOL)
    loss = DeepSupervisionLoss(base, weights=[0.0, 2.0])
    torch.testing.assert_close(
        loss(outputs, target), 2 * base(outputs[1], target[..., 1::2, 1::2, 1::2]), **TOL
    )


def test_deep_supervision_plain_tensor_and_wrong_weight_count():
    logits, target = torch.randn(2, 1, 8, 8), torch.randint(0, 2, (2, 1, 8, 8))
    loss = create_loss("dice", deep_supervision=True, deep_supervision_weights=[0.7, 0.3])
    torch.testing.assert_close(loss(logits, target), create_loss("dice")(logits, target))
    with pytest.raises(ValueError, match="one weight per output"):
        loss([logits, logits[..., ::2, ::2], logits[..., ::4, ::4]], target)


# --- gradients flow -----------------------------------------------------------------------


@pytest.mark.parametrize("name", list_losses())
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_loss_decreases_under_optimisation(name, mode):
    torch.manual_seed(0)
    channels = 1 if mode == "binary" else 3
    target = torch.randint(0, 2, (2, channels, 8, 8)).float()
    if mode == "multiclass":
        target = torch.randint(0, channels, (2, 8, 8))
    logits = torch.zeros(2, channels, 8, 8, requires_grad=True)
    loss_fn = build(name, mode=mode)
    optimiser = torch.optim.Adam([logits], lr=0.1)
    first = loss_fn(logits, target)
    for _ in range(15):
        optimiser.zero_grad()
        loss = loss_fn(logits, target)
        loss.backward()
        optimiser.step()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert loss_fn(logits, target).item() < 0.7 * first.item()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", list_losses())
def test_losses_run_on_cuda_under_autocast(name):
    logits = torch.randn(2, 3, 8, 8, device="cuda", requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8), device="cuda")
    loss_fn = build(name, mode="multiclass", deep_supervision=True).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = loss_fn([logits, logits[..., ::2, ::2]], target)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(logits.grad).all()
