"""Typed, validated configuration of the batch augmentation pipeline.

Every transform has a per-sample probability (``*_prob``) and a range. Ranges are
``(low, high)`` pairs drawn uniformly per sample. ``AugmentConfig.from_strength(s)`` maps
one scalar in ``[0, 1]`` to a whole configuration, for hyperparameter searches that tune
"augmentation strength": 0 is the identity, 0.5 is about the defaults, 1 is strong.

Example:
    >>> cfg = AugmentConfig(elastic_prob=0.0, gamma_range=(0.8, 1.25))
    >>> AugmentConfig.from_strength(0.0).is_identity
    True
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from unet_core.augment.intensity import INTENSITY_TRANSFORMS

Prob = float
Range = tuple[float, float]
PaddingMode = Literal["zeros", "border", "reflection"]


class AugmentConfig(BaseModel):
    """Per-transform probabilities and ranges; the defaults are a moderate recipe."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        title="Augmentation",
        json_schema_extra={
            "description": "Random transforms of each training sample: probability and range "
            "of each; the defaults are a moderate recipe."
        },
    )

    # Exact permutations (no resampling).
    flip_prob: Prob = Field(
        0.5, ge=0.0, le=1.0, description="probability of a flip, per spatial axis independently"
    )
    rot90_prob: Prob = Field(
        0.5, ge=0.0, le=1.0, description="probability of quarter turns in the last two axes"
    )
    # Affine + elastic share one sampling grid, so together they cost one resample.
    affine_prob: Prob = Field(
        0.3, ge=0.0, le=1.0, description="probability of rotating, scaling and translating"
    )
    rotate_deg: float = Field(
        15.0, ge=0.0, le=180.0, description="largest rotation about each axis, degrees"
    )
    scale_range: Range = Field(
        (0.85, 1.15), description="zoom factor range, isotropic (above 1 magnifies)"
    )
    translate_frac: float = Field(
        0.05, ge=0.0, le=0.5, description="largest shift, as a fraction of each side"
    )
    elastic_prob: Prob = Field(
        0.2, ge=0.0, le=1.0, description="probability of a smooth random displacement field"
    )
    elastic_magnitude: float = Field(
        0.02, ge=0.0, le=0.2, description="std of the displacement, as a fraction of each side"
    )
    elastic_grid: int = Field(
        6, ge=2, le=32, description="control points per axis of the displacement (fewer: smoother)"
    )
    padding_mode: PaddingMode = Field(
        "reflection", description="how image and mask are filled outside the field of view"
    )
    # Intensity: image only, masks are never touched.
    brightness_prob: Prob = Field(
        0.15, ge=0.0, le=1.0, description="probability of a brightness change (image only)"
    )
    brightness_range: Range = Field(
        (0.75, 1.25), description="multiplicative brightness factor range"
    )
    contrast_prob: Prob = Field(
        0.15, ge=0.0, le=1.0, description="probability of a contrast change (image only)"
    )
    contrast_range: Range = Field(
        (0.75, 1.25), description="contrast stretch range about the sample's mean"
    )
    gamma_prob: Prob = Field(
        0.15, ge=0.0, le=1.0, description="probability of a gamma change (image only)"
    )
    gamma_range: Range = Field(
        (0.7, 1.5), description="gamma exponent range, on the min-max rescaled image"
    )
    noise_prob: Prob = Field(
        0.15, ge=0.0, le=1.0, description="probability of additive Gaussian noise (image only)"
    )
    noise_std: Range = Field((0.0, 0.1), description="noise std range, in image units")
    blur_prob: Prob = Field(
        0.1, ge=0.0, le=1.0, description="probability of a Gaussian blur (image only)"
    )
    blur_sigma: Range = Field((0.5, 1.0), description="blur sigma range, pixels (at most 5)")
    intensity_order: tuple[str, ...] = Field(
        ("brightness", "contrast", "gamma", "blur", "noise"),
        description="order in which the intensity transforms apply; "
        f"names from {sorted(INTENSITY_TRANSFORMS)}",
    )

    @field_validator("scale_range", "brightness_range", "contrast_range", "gamma_range")
    @classmethod
    def _positive_range(cls, value: Range) -> Range:
        low, high = value
        if not 0.0 < low <= high:
            raise ValueError(f"needs 0 < low <= high, got {value}; e.g. (0.8, 1.2)")
        return value

    @field_validator("noise_std", "blur_sigma")
    @classmethod
    def _non_negative_range(cls, value: Range) -> Range:
        low, high = value
        if not 0.0 <= low <= high:
            raise ValueError(f"needs 0 <= low <= high, got {value}")
        return value

    @field_validator("blur_sigma")
    @classmethod
    def _bounded_sigma(cls, value: Range) -> Range:
        # The kernel spans 3 sigma each side; beyond 5 px a blur is no longer an augmentation.
        if value[1] > 5.0:
            raise ValueError(f"blur_sigma high must be <= 5 pixels, got {value}")
        return value

    @field_validator("intensity_order")
    @classmethod
    def _known_transforms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in INTENSITY_TRANSFORMS]
        if unknown:
            raise ValueError(f"unknown {unknown}; valid names: {sorted(INTENSITY_TRANSFORMS)}")
        if len(set(value)) != len(value):
            raise ValueError(f"names repeat in {value}; list each transform once")
        return value

    @model_validator(mode="after")
    def _check_probabilities(self) -> AugmentConfig:
        for name in INTENSITY_TRANSFORMS:
            if getattr(self, f"{name}_prob") > 0 and name not in self.intensity_order:
                raise ValueError(
                    f"{name}_prob > 0 but '{name}' is not in intensity_order; "
                    f"add it or set {name}_prob=0"
                )
        return self

    @property
    def is_identity(self) -> bool:
        """True when no transform can fire (every probability is zero)."""
        return all(v == 0.0 for k, v in self.model_dump().items() if k.endswith("_prob"))

    @classmethod
    def from_strength(cls, strength: float, **overrides: object) -> AugmentConfig:
        """A configuration from one scalar; probabilities and range widths grow linearly.

        Args:
            strength: 0 = no augmentation, 0.5 ~ the defaults, 1 = strong.
            **overrides: fields set explicitly, after the preset is computed.

        Returns:
            A validated `AugmentConfig`.
        """
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        s = strength

        def around_one(width: float) -> Range:
            return (1.0 - width * s, 1.0 + width * s)

        preset: dict[str, object] = {
            "flip_prob": min(1.0, 2 * s) * 0.5,  # flips are label-safe: full rate from s=0.5
            "rot90_prob": min(1.0, 2 * s) * 0.5,
            "affine_prob": 0.6 * s,
            "rotate_deg": 30.0 * s,
            "scale_range": around_one(0.3),
            "translate_frac": 0.1 * s,
            "elastic_prob": 0.4 * s,
            "elastic_magnitude": 0.04 * s,
            "brightness_prob": 0.3 * s,
            "brightness_range": around_one(0.5),
            "contrast_prob": 0.3 * s,
            "contrast_range": around_one(0.5),
            "gamma_prob": 0.3 * s,
            "gamma_range": (1.0 - 0.6 * s, 1.0 + 1.0 * s),
            "noise_prob": 0.3 * s,
            "noise_std": (0.0, 0.2 * s),
            "blur_prob": 0.2 * s,
            "blur_sigma": (0.5, 0.5 + s),
        }
        preset.update(overrides)
        return cls.model_validate(preset)
