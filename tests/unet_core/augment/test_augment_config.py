"""AugmentConfig: validation, presets, registry lookups."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from unet_core.augment import INTENSITY_TRANSFORMS, AugmentConfig, get_intensity_transform


def test_defaults_are_valid_frozen_and_strict() -> None:
    cfg = AugmentConfig()
    assert not cfg.is_identity
    with pytest.raises(ValidationError):
        cfg.flip_prob = 0.1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        AugmentConfig(flip_probability=0.5)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("flip_prob", 1.5, "less than or equal"),
        ("scale_range", (1.2, 0.8), "low <= high"),
        ("gamma_range", (0.0, 1.0), "0 < low"),
        ("noise_std", (-0.1, 0.1), "0 <= low"),
        ("blur_sigma", (0.5, 9.0), "<= 5 pixels"),
        ("intensity_order", ("brightness", "sharpen"), "valid names"),
        ("intensity_order", ("gamma", "gamma", "noise", "blur"), "repeat"),
    ],
)
def test_invalid_values_are_refused_with_a_hint(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AugmentConfig(**{field: value})


def test_enabled_transform_missing_from_order_is_refused() -> None:
    with pytest.raises(ValidationError, match="gamma_prob > 0"):
        AugmentConfig(intensity_order=("brightness", "contrast", "noise", "blur"))
    cfg = AugmentConfig(
        intensity_order=("noise",), brightness_prob=0, contrast_prob=0, gamma_prob=0, blur_prob=0
    )
    assert cfg.intensity_order == ("noise",)


def test_from_strength_zero_is_identity_and_strength_is_monotone() -> None:
    assert AugmentConfig.from_strength(0.0).is_identity
    weak, strong = AugmentConfig.from_strength(0.3), AugmentConfig.from_strength(0.9)
    for name in ("affine_prob", "elastic_prob", "noise_prob", "rotate_deg", "elastic_magnitude"):
        assert getattr(weak, name) < getattr(strong, name), name
    assert (
        strong.scale_range[0] < weak.scale_range[0] <= weak.scale_range[1] < strong.scale_range[1]
    )


def test_from_strength_overrides_and_range() -> None:
    assert AugmentConfig.from_strength(0.5, elastic_prob=0.0).elastic_prob == 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        AugmentConfig.from_strength(1.5)


def test_registry_lookup_names_valid_transforms() -> None:
    assert get_intensity_transform("gamma") is INTENSITY_TRANSFORMS["gamma"]
    with pytest.raises(KeyError, match="valid names"):
        get_intensity_transform("sharpen")
    for name, entry in INTENSITY_TRANSFORMS.items():
        assert entry.range_field in AugmentConfig.model_fields, name
        assert f"{name}_prob" in AugmentConfig.model_fields, name
