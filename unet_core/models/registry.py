"""Model presets (a plain dict) and the lookups ``create_model``/``get_model_config``.

Presets are complete `ModelConfig` instances, validated at import time; keyword
overrides are applied on top and validated again, so a typo or a bad combination
fails before any layer is built.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from torch import nn

from unet_core.models.base import SegmentationModel
from unet_core.models.config import ModelConfig
from unet_core.models.unet import UNet
from unet_core.models.unetpp import UNetPlusPlus

PRESETS: dict[str, ModelConfig] = {
    # Light defaults (32 base channels, 4 levels); users override for their data.
    "unet": ModelConfig(),
    "unetpp": ModelConfig(skip="nested"),
    "attention_unet": ModelConfig(attention_gates=True),
    "resunet": ModelConfig(block="residual"),
    # nnU-Net-style 3D defaults: instance norm + leaky ReLU suit small volume batches.
    "unet3d": ModelConfig(spatial_dims=3, norm="instance", activation="leaky_relu"),
    # Ronneberger et al. 2015 channel plan 64..1024 with same padding and batch norm,
    # i.e. milesial/Pytorch-UNet (bilinear=False): 31,036,546 parameters for 1 -> 2
    # channels (the often quoted 31,037,698 is its default 3 -> 2 channels).
    "classic_unet": ModelConfig(in_channels=1, out_channels=2, base_channels=64, depth=4),
}


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted preset names, optionally filtered by a shell-style ``pattern`` (``"*unet*"``)."""
    names = sorted(PRESETS)
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def get_model_config(name_or_config: str | ModelConfig, **overrides: Any) -> ModelConfig:
    """Resolve a preset name (or a config) and apply validated keyword overrides.

    Overrides that are ``None`` are dropped so defaults stay in one place (the preset).

    Raises:
        ValueError: for an unknown name (lists the valid ones).
        pydantic.ValidationError: for an invalid override value or combination.
    """
    if isinstance(name_or_config, ModelConfig):
        base = name_or_config
    else:
        try:
            base = PRESETS[name_or_config]
        except KeyError:
            raise ValueError(
                f"unknown model {name_or_config!r}; valid names: {list_models()}"
            ) from None
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not overrides:
        return base
    # Re-validate the merged fields: model_copy(update=...) would skip validation.
    return ModelConfig.model_validate({**base.model_dump(exclude_unset=True), **overrides})


def build_model(config: ModelConfig) -> SegmentationModel:
    """Build the architecture a config describes (the skip type picks the class)."""
    if config.skip == "nested":
        return UNetPlusPlus(config)
    return UNet(config)


def create_model(name_or_config: str | ModelConfig, **overrides: Any) -> nn.Module:
    """Build a model from a preset name or config, with keyword overrides.

    Example:
        >>> model = create_model("unet", in_channels=3, out_channels=4, depth=3)

    Returns:
        A `SegmentationModel` mapping [B, in_channels, *S] to logits
        [B, out_channels, *S] (a list under deep supervision in training mode).
    """
    return build_model(get_model_config(name_or_config, **overrides))
