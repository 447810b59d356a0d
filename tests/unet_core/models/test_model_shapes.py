"""Forward contract of every preset, generated from the registry, in 2D and 3D.

Sizes are odd (not multiples of 2**depth) so the pad-and-crop path always runs.
"""

from __future__ import annotations

import math

import pytest
import torch

from unet_core.models import create_model, get_model_config, list_models
from unet_core.models.layers import layer

DIMS = [2, 3]
ODD_SIZES = {2: (37, 45), 3: (19, 21, 23)}


@pytest.mark.parametrize("spatial_dims", DIMS)
@pytest.mark.parametrize("name", list_models())
def test_output_has_input_spatial_size(tiny, name: str, spatial_dims: int) -> None:
    config = tiny(name, spatial_dims, in_channels=2, out_channels=3)
    model = create_model(config)
    x = torch.randn(2, 2, *ODD_SIZES[spatial_dims])
    out = model(x)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 3, *ODD_SIZES[spatial_dims])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_full_size_preset_runs_on_an_odd_input(name: str) -> None:
    model = create_model(name).eval()
    config = model.config
    size = (13, 19) if config.spatial_dims == 2 else (9, 11, 13)
    with torch.no_grad():
        out = model(torch.randn(1, config.in_channels, *size))
    assert out.shape == (1, config.out_channels, *size)


@pytest.mark.parametrize("spatial_dims", DIMS)
@pytest.mark.parametrize("name", list_models())
def test_deep_supervision_contract(tiny, name: str, spatial_dims: int) -> None:
    config = tiny(name, spatial_dims, deep_supervision=True, out_channels=2)
    model = create_model(config).train()
    size = ODD_SIZES[spatial_dims]
    x = torch.randn(2, config.in_channels, *size)

    outputs = model(x)
    assert isinstance(outputs, list)
    assert len(outputs) == config.depth
    assert outputs[0].shape == (2, 2, *size)
    for i, aux in enumerate(outputs):
        # U-Net: decoder level i at ceil(S / 2**i); U-Net++: all full resolution.
        factor = 1 if config.skip == "nested" else 2**i
        assert aux.shape == (2, 2, *(math.ceil(s / factor) for s in size))

    model.eval()
    with torch.no_grad():
        main = model(x)
    assert isinstance(main, torch.Tensor)
    assert main.shape == (2, 2, *size)


def test_deep_supervision_outputs_differ_between_heads(tiny) -> None:
    model = create_model(tiny("unetpp", deep_supervision=True)).train()
    outputs = model(torch.randn(2, 1, 20, 20))
    assert not torch.allclose(outputs[0], outputs[1])


@pytest.mark.parametrize("spatial_dims", DIMS)
def test_attention_maps_one_per_skip_in_unit_interval(tiny, spatial_dims: int) -> None:
    config = tiny("attention_unet", spatial_dims)
    model = create_model(config)
    size = ODD_SIZES[spatial_dims]
    model(torch.randn(2, 1, *size))

    maps = model.last_attention_maps
    assert len(maps) == config.depth  # one skip per level above the bottleneck
    for level, alpha in enumerate(maps):
        assert alpha.shape == (2, 1, *(math.ceil(s / 2**level) for s in size))
        assert alpha.min() >= 0.0
        assert alpha.max() <= 1.0
        assert not alpha.requires_grad


def test_attention_maps_are_refreshed_per_forward(tiny) -> None:
    model = create_model(tiny("attention_unet"))
    model(torch.randn(1, 1, 16, 16))
    first = model.last_attention_maps
    model(torch.randn(1, 1, 24, 24))
    assert first[0].shape[2:] == (16, 16)
    assert model.last_attention_maps[0].shape[2:] == (24, 24)


def test_models_without_gates_keep_no_attention_maps(tiny) -> None:
    model = create_model(tiny("unet"))
    model(torch.randn(2, 1, 16, 16))
    assert model.last_attention_maps == []


@pytest.mark.parametrize("name", list_models())
def test_every_parameter_gets_a_gradient(tiny, name: str) -> None:
    # Catches dead branches: an unused head, gate or up-sampler has no gradient.
    model = create_model(tiny(name, deep_supervision=True, upsample="transpose"))
    x = torch.randn(2, model.config.in_channels, *ODD_SIZES[model.config.spatial_dims])
    outputs = model(x)
    sum(o.square().mean() for o in outputs).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"block": "residual", "norm": "group", "norm_groups": 2, "activation": "gelu"},
        {"norm": "instance", "activation": "prelu", "upsample": "interpolate"},
        {"norm": "none", "activation": "silu", "dropout": 0.2},
        {"skip": "nested", "block": "residual", "upsample": "interpolate", "norm": "none"},
        {"attention_gates": True, "upsample": "interpolate", "activation": "leaky_relu"},
        {"channels": [3, 5, 7], "depth": 2, "activation": "elu"},
        {"depth": 1},
        {"depth": 5, "base_channels": 2},
    ],
)
@pytest.mark.parametrize("spatial_dims", DIMS)
def test_layer_options_keep_the_shape(tiny, overrides: dict, spatial_dims: int) -> None:
    model = create_model(tiny("unet", spatial_dims, **overrides))
    size = ODD_SIZES[spatial_dims]
    assert model(torch.randn(2, 1, *size)).shape == (2, 1, *size)


def test_batch_items_are_independent_in_eval(tiny) -> None:
    model = create_model(tiny("unet", norm="batch")).eval()
    x = torch.randn(3, 1, 21, 17)
    with torch.no_grad():
        assert torch.allclose(model(x)[1:2], model(x[1:2]), atol=1e-5)


def test_layer_factory_rejects_unknown_layers() -> None:
    assert layer("conv", 3) is torch.nn.Conv3d
    with pytest.raises(ValueError, match=r"valid: .*conv/2d"):
        layer("conv", 1)


def test_get_model_config_3d_override_of_a_2d_preset() -> None:
    assert get_model_config("attention_unet", spatial_dims=3).spatial_dims == 3


@pytest.mark.parametrize(("name", "size"), [("unet", (5, 7)), ("unet3d", (3, 4, 5))])
def test_input_smaller_than_the_bottleneck_grid_works(tiny, name: str, size: tuple) -> None:
    # Batch size 1 in training: batch/instance norm need more than one bottleneck voxel.
    model = create_model(tiny(name, len(size))).train()
    assert model(torch.randn(1, 1, *size)).shape == (1, 1, *size)
