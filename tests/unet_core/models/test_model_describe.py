"""describe(): parameter count, forward FLOPs and activation memory are consistent."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unet_core.models import ModelDescription, create_model, describe, list_models


@pytest.mark.parametrize("name", list_models())
def test_describe_returns_positive_numbers(tiny, name: str) -> None:
    model = create_model(tiny(name))
    shape = (1, model.config.in_channels) + (
        (32, 32) if model.config.spatial_dims == 2 else (16,) * 3
    )
    info = describe(model, shape)
    assert isinstance(info, ModelDescription)
    assert info.input_shape == shape
    assert info.parameters == sum(p.numel() for p in model.parameters()) > 0
    assert info.trainable_parameters == info.parameters
    assert info.flops > 0
    assert info.activation_bytes > 0


def test_flops_and_memory_scale_with_input_area(tiny) -> None:
    model = create_model(tiny("unet"))
    small, large = describe(model, (1, 1, 32, 32)), describe(model, (1, 1, 64, 64))
    assert small.parameters == large.parameters
    assert 3.8 < large.flops / small.flops < 4.2
    assert 3.8 < large.activation_bytes / small.activation_bytes < 4.2


def test_flops_scale_with_batch_and_per_sample_is_constant(tiny) -> None:
    model = create_model(tiny("resunet"))
    one, two = describe(model, (1, 1, 32, 32)), describe(model, (2, 1, 32, 32))
    assert two.flops == 2 * one.flops
    assert two.flops_per_sample == one.flops_per_sample


def test_flops_of_a_single_conv_match_the_formula() -> None:
    # 2 FLOPs per multiply-add: 2 * C_in * C_out * k * k * H * W.
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=False)
    assert describe(conv, (1, 3, 10, 10)).flops == 2 * 3 * 5 * 9 * 100
    assert describe(conv, (1, 3, 10, 10)).activation_bytes == 5 * 100 * 4


def test_describe_leaves_the_model_unchanged(tiny) -> None:
    model = create_model(tiny("unet")).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    describe(model, (2, 1, 32, 32))
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_deep_supervision_heads_are_counted(tiny) -> None:
    plain = describe(create_model(tiny("unet")), (1, 1, 32, 32))
    supervised = describe(create_model(tiny("unet", deep_supervision=True)), (1, 1, 32, 32))
    assert supervised.flops > plain.flops
