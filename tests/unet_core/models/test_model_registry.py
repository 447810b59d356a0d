"""Registry lookups: names, patterns, overrides, unknown names, the classic U-Net size."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from unet_core.models import (
    ModelConfig,
    UNet,
    UNetPlusPlus,
    create_model,
    get_model_config,
    list_models,
)

EXPECTED = ["attention_unet", "classic_unet", "resunet", "unet", "unet3d", "unetpp"]


def test_list_models_has_every_preset_sorted() -> None:
    assert list_models() == EXPECTED


def test_list_models_filters_by_pattern() -> None:
    assert list_models("unet*") == ["unet", "unet3d", "unetpp"]
    assert list_models("*attention*") == ["attention_unet"]
    assert list_models("nothing*") == []


@pytest.mark.parametrize("lookup", [create_model, get_model_config])
def test_unknown_name_lists_valid_names(lookup) -> None:
    with pytest.raises(ValueError, match=r"unknown model 'unet4'.*attention_unet.*unetpp"):
        lookup("unet4")


def test_overrides_apply_on_the_preset() -> None:
    config = get_model_config("resunet", in_channels=3, out_channels=5, depth=2)
    assert (config.block, config.in_channels, config.out_channels, config.depth) == (
        "residual",
        3,
        5,
        2,
    )


def test_none_overrides_keep_the_preset_default() -> None:
    assert get_model_config("unet3d", spatial_dims=None).spatial_dims == 3


def test_overrides_are_validated() -> None:
    with pytest.raises(ValidationError, match="set skip='concat'"):
        get_model_config("unetpp", attention_gates=True)
    with pytest.raises(ValidationError, match="Extra inputs"):
        get_model_config("unet", widht=3)


def test_config_object_accepted_with_overrides() -> None:
    config = ModelConfig(depth=2, base_channels=4)
    assert get_model_config(config) is config
    assert get_model_config(config, out_channels=3).out_channels == 3


@pytest.mark.parametrize("name", list_models())
def test_create_model_builds_the_configured_class(name: str) -> None:
    config = get_model_config(name, base_channels=4, depth=2)
    model = create_model(config)
    expected = UNetPlusPlus if config.skip == "nested" else UNet
    assert type(model) is expected
    assert model.config == config


def test_classic_unet_matches_the_standard_pytorch_unet_size() -> None:
    # milesial/Pytorch-UNet (bilinear=False, batch norm, transposed convs) counts
    # 31,036,546 parameters for 1 -> 2 channels; its often quoted 31,037,698 is for
    # 3 input channels (the first 3x3 conv has 2 * 64 * 9 = 1,152 more weights).
    def count(**kw: int) -> int:
        return sum(p.numel() for p in create_model("classic_unet", **kw).parameters())

    n_gray = count()
    assert n_gray == 31_036_546
    assert abs(n_gray - 31.04e6) / 31.04e6 < 0.005
    assert count(in_channels=3) == 31_037_698
