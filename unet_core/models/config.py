"""Typed, validated configuration of the U-Net family.

A `ModelConfig` is the single description of an architecture: presets in
`unet_core.models.registry` are instances of it and every builder takes one. Invalid
values fail with the list of valid ones (pydantic ``Literal``); invalid combinations
fail at construction with a message that says what to change.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

BlockType = Literal["plain", "residual"]
SkipType = Literal["concat", "nested"]
UpsampleType = Literal["transpose", "interpolate"]
NormType = Literal["batch", "instance", "group", "none"]
ActivationType = Literal["relu", "leaky_relu", "gelu", "silu", "prelu", "elu"]


class ModelConfig(BaseModel):
    """Architecture of one U-Net variant.

    Level ``i`` (0 = full resolution, ``depth`` = bottleneck) has ``channels[i]``
    feature maps at ``1 / level_factors[i]`` of the input size per axis (``1 / 2**i``
    without ``pool_kernels``).

    Example:
        >>> ModelConfig(depth=3, base_channels=16).level_channels
        (16, 32, 64, 128)
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        title="Model architecture",
        # The form shows this instead of the docstring (whose doctest is for readers of code).
        json_schema_extra={"description": "Architecture of the U-Net variant to train."},
    )

    spatial_dims: Literal[2, 3] = Field(
        2, description="2: images [B, C, H, W]; 3: volumes [B, C, D, H, W]"
    )
    in_channels: int = Field(1, ge=1, description="input image channels")
    out_channels: int = Field(1, ge=1, description="logit channels: classes, or 1 for binary")
    depth: int = Field(4, ge=1, le=6, description="number of down-sampling steps")
    pool_kernels: tuple[tuple[int, ...], ...] | None = Field(
        None,
        description="per level (finest first), per spatial axis: 2 halves that axis, 1 "
        "keeps it (anisotropic volumes pool their coarse axis later); none: 2 on every axis",
    )
    base_channels: int = Field(32, ge=1, description="feature maps at full resolution")
    channel_multiplier: int = Field(2, ge=1, description="growth of feature maps per level")
    channels: tuple[int, ...] | None = Field(
        None, description="explicit widths per level, finest first; wins over base/multiplier"
    )
    block: BlockType = Field(
        "plain", description="plain: two conv-norm-act; residual: adds a shortcut"
    )
    skip: SkipType = Field("concat", description="concat: U-Net skips; nested: U-Net++ skips")
    attention_gates: bool = Field(
        False, description="additive attention gates on the skips (Oktay et al.; concat only)"
    )
    deep_supervision: bool = Field(
        False, description="in training, also return coarser outputs (the loss must accept them)"
    )
    upsample: UpsampleType = Field(
        "transpose", description="transpose: learned 2x2 transposed conv; interpolate: linear + 1x1"
    )
    norm: NormType = Field("batch", description="normalisation after every 3x3 conv of a block")
    norm_groups: int = Field(
        8, ge=1, description="groups of norm=group; must divide every level's width"
    )
    activation: ActivationType = Field("relu", description="non-linearity after every norm")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout probability in each block")

    @property
    def level_channels(self) -> tuple[int, ...]:
        """Feature maps per level, finest first (length ``depth + 1``)."""
        if self.channels is not None:
            return self.channels
        return tuple(self.base_channels * self.channel_multiplier**i for i in range(self.depth + 1))

    @property
    def kernels(self) -> tuple[tuple[int, ...], ...]:
        """Pooling kernel of each down-sampling step, per axis (length ``depth``)."""
        if self.pool_kernels is not None:
            return self.pool_kernels
        return ((2,) * self.spatial_dims,) * self.depth

    @property
    def level_factors(self) -> tuple[tuple[int, ...], ...]:
        """Down-sampling factor of each level per axis, finest (all 1) first."""
        factors = [(1,) * self.spatial_dims]
        for kernel in self.kernels:
            factors.append(tuple(f * k for f, k in zip(factors[-1], kernel, strict=True)))
        return tuple(factors)

    @model_validator(mode="after")
    def _check_pool_kernels(self) -> ModelConfig:
        kernels = self.pool_kernels
        if kernels is None:
            return self
        if len(kernels) != self.depth:
            raise ValueError(
                f"pool_kernels has {len(kernels)} levels but depth={self.depth}; give one "
                f"kernel per down-sampling step or set depth={len(kernels)}"
            )
        for kernel in kernels:
            if len(kernel) != self.spatial_dims or not set(kernel) <= {1, 2}:
                raise ValueError(
                    f"pool_kernels entry {list(kernel)} needs {self.spatial_dims} values of "
                    "1 (keep the axis) or 2 (halve it)"
                )
        return self

    @model_validator(mode="after")
    def _check_combination(self) -> ModelConfig:
        if self.channels is not None:
            if len(self.channels) != self.depth + 1:
                raise ValueError(
                    f"channels has {len(self.channels)} entries but depth={self.depth} needs "
                    f"{self.depth + 1} (one per level, finest first); set depth="
                    f"{len(self.channels) - 1} or give {self.depth + 1} channel counts"
                )
            if any(c < 1 for c in self.channels):
                raise ValueError(f"channels must all be >= 1, got {list(self.channels)}")
        if self.norm == "group":
            bad = [c for c in self.level_channels if c % self.norm_groups]
            if bad:
                raise ValueError(
                    f"norm='group' with norm_groups={self.norm_groups} needs every level's "
                    f"channel count divisible by {self.norm_groups}, but "
                    f"{list(self.level_channels)} has {bad}; change base_channels/channels, "
                    f"pick a norm_groups that divides them, or use norm='instance'"
                )
        if self.attention_gates and self.skip == "nested":
            raise ValueError(
                "attention_gates=True is only supported with skip='concat'; "
                "set skip='concat' (Attention U-Net) or attention_gates=False (U-Net++)"
            )
        return self
