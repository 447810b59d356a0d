"""Batched, seeded augmentation of image + mask batches on the training device.

`BatchAugmenter(config, spatial_dims)(images, masks, generator)` transforms a whole batch
with torch ops: exact flips and quarter turns, one combined affine + elastic resample
(bilinear images, nearest-neighbour masks), then intensity transforms on the images only.
`AugmentConfig` holds every probability and range; `AugmentConfig.from_strength(s)` is a
one-knob preset for hyperparameter searches.
"""

from __future__ import annotations

from unet_core.augment.config import AugmentConfig
from unet_core.augment.intensity import (
    INTENSITY_TRANSFORMS,
    IntensityTransform,
    get_intensity_transform,
)
from unet_core.augment.pipeline import BatchAugmenter

__all__ = [
    "INTENSITY_TRANSFORMS",
    "AugmentConfig",
    "BatchAugmenter",
    "IntensityTransform",
    "get_intensity_transform",
]
