"""Typed loss configuration, validated once at the edge (CLI, flow parameters, Tune trial).

Example (YAML)::

    loss:
      name: dice_focal          # any name from list_losses()
      mode: multiclass          # binary | multiclass | multilabel
      include_background: false
      params: {gamma: 2.0, lambda_focal: 0.5}
      deep_supervision: true    # model returns [main, aux1, ...] in training mode

    loss:
      name: combo
      terms:
        - {name: dice, weight: 1.0}
        - {name: tversky, weight: 0.5, params: {beta: 0.7}}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator
from torch import nn

from unet_core.losses.registry import create_loss, list_losses
from unet_core.losses.targets import Mode

# The registry stays the one list of names: the form's choices are read from it.
_LOSS_NAMES: list[JsonValue] = list(list_losses())


class LossTerm(BaseModel):
    """One weighted term of a combo loss."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="Loss term")

    name: str = Field(description="registered loss name", json_schema_extra={"enum": _LOSS_NAMES})
    weight: float = Field(1.0, ge=0, description="multiplier of this term in the sum")
    params: dict[str, Any] = Field(
        default_factory=dict, description='the term\'s own options, e.g. {"beta": 0.7}'
    )


class LossConfig(BaseModel):
    """Which loss to train with and its options; build() returns the module."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="Loss")

    name: str = Field(
        "dice_bce", description="registered loss name", json_schema_extra={"enum": _LOSS_NAMES}
    )
    mode: Mode = Field(
        "binary",
        description="binary: sigmoid, 1 channel; multiclass: softmax; multilabel: sigmoid per channel",
    )
    include_background: bool = Field(
        True, description="false drops channel 0 from the region and focal terms"
    )
    class_weights: tuple[float, ...] | None = Field(
        None, description="one weight per output channel, background included; none: equal"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description='loss-specific options, e.g. {"gamma": 2.0}'
    )
    terms: tuple[LossTerm, ...] = Field((), description="the weighted terms of name=combo only")
    deep_supervision: bool = Field(
        False, description="accept the model's list of outputs, main output first"
    )
    deep_supervision_weights: tuple[float, ...] | None = Field(
        None, description="weight per output; none: halving per level, normalised"
    )

    @model_validator(mode="after")
    def _check_builds(self) -> LossConfig:
        if self.name not in list_losses():
            raise ValueError(f"unknown loss {self.name!r}; valid names: {list_losses()}")
        if (self.name == "combo") != bool(self.terms):
            raise ValueError("set terms exactly when name='combo' (e.g. terms=[{name: dice}])")
        # Building is cheap (no tensors but class weights) and catches every bad option here,
        # at the edge, instead of on the first training step.
        self.build()
        return self

    def build(self) -> nn.Module:
        """Create the configured loss module."""
        return create_loss_from_config(self)


def create_loss_from_config(config: LossConfig) -> nn.Module:
    """Create the loss described by ``config``.

    Args:
        config: A validated :class:`LossConfig`.

    Returns:
        The loss module (a :class:`DeepSupervisionLoss` when ``deep_supervision``).
    """
    options: dict[str, Any] = dict(config.params)
    if config.terms:
        options["losses"] = [(term.name, term.weight, dict(term.params)) for term in config.terms]
    return create_loss(
        config.name,
        mode=config.mode,
        include_background=config.include_background,
        class_weights=config.class_weights,
        deep_supervision=config.deep_supervision,
        deep_supervision_weights=config.deep_supervision_weights,
        **options,
    )
