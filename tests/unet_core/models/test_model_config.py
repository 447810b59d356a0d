"""ModelConfig: valid values, invalid values and combinations with helpful messages."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from unet_core.models import ModelConfig


def test_default_channel_plan_doubles_per_level() -> None:
    config = ModelConfig(depth=3, base_channels=16)
    assert config.level_channels == (16, 32, 64, 128)


def test_channel_multiplier_sets_growth() -> None:
    assert ModelConfig(depth=2, base_channels=8, channel_multiplier=3).level_channels == (8, 24, 72)


def test_explicit_channels_win_over_base_channels() -> None:
    config = ModelConfig(depth=2, base_channels=64, channels=[8, 12, 20])
    assert config.level_channels == (8, 12, 20)


def test_config_is_frozen() -> None:
    config = ModelConfig()
    with pytest.raises(ValidationError, match="frozen"):
        config.depth = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"spatial_dims": 4}, "Input should be 2 or 3"),
        ({"block": "dense"}, "'plain' or 'residual'"),
        ({"skip": "add"}, "'concat' or 'nested'"),
        ({"norm": "layer"}, "'batch', 'instance', 'group' or 'none'"),
        ({"activation": "tanh"}, "'relu', 'leaky_relu', 'gelu', 'silu', 'prelu' or 'elu'"),
        ({"upsample": "pixelshuffle"}, "'transpose' or 'interpolate'"),
        ({"depth": 0}, "greater than or equal to 1"),
        ({"depth": 7}, "less than or equal to 6"),
        ({"dropout": 1.0}, "less than 1"),
        ({"in_channels": 0}, "greater than or equal to 1"),
        ({"kernel": 5}, "Extra inputs are not permitted"),
        ({"depth": 3, "channels": [8, 16, 32]}, "needs 4 .*set depth=2"),
        ({"depth": 1, "channels": [8, 0]}, "must all be >= 1"),
        (
            {"norm": "group", "norm_groups": 8, "base_channels": 12},
            "divisible by 8.*\\[12\\]",
        ),
        ({"skip": "nested", "attention_gates": True}, "set skip='concat'"),
    ],
)
def test_invalid_config_is_rejected_with_a_hint(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelConfig(**fields)


def test_group_norm_accepts_divisible_channels() -> None:
    config = ModelConfig(norm="group", norm_groups=4, base_channels=12, depth=2)
    assert all(c % 4 == 0 for c in config.level_channels)
