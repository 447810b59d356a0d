"""Intensity transforms on image batches; masks are never passed to them.

Each transform takes the images of the samples it applies to, ``[b, C, *spatial]``, and
one drawn value per sample, ``[b]`` (on the CPU, where the pipeline draws them, so
reading one never waits for the device), and returns new images of the
same shape. The pipeline selects the samples, so a transform never sees an identity
sample and never has to special-case one.

`INTENSITY_TRANSFORMS` is the registry: name -> `IntensityTransform` (the function and
the `AugmentConfig` field that holds its range). ``AugmentConfig.intensity_order`` lists
names from it; the probability field is always ``<name>_prob``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IntensityFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape ``[b]`` values to broadcast over ``[b, C, *spatial]``."""
    return values.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.ndim - 1)))


def brightness(images: torch.Tensor, factor: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Multiply each sample by its factor (MONAI ``RandScaleIntensity`` with factor-1)."""
    return images * _per_sample(factor, images)


def contrast(images: torch.Tensor, factor: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Stretch each sample and channel about its own mean by ``factor``."""
    dims = tuple(range(2, images.ndim))
    mean = images.mean(dim=dims, keepdim=True)
    return (images - mean) * _per_sample(factor, images) + mean


def gamma(images: torch.Tensor, exponent: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Raise the min-max rescaled sample to ``exponent`` and scale back to its range.

    Rescaling first keeps negative (normalised) intensities defined under the power.
    """
    dims = tuple(range(2, images.ndim))
    low = images.amin(dim=dims, keepdim=True)
    span = images.amax(dim=dims, keepdim=True) - low
    unit = ((images - low) / span.clamp_min(1e-7)).clamp(0.0, 1.0)
    return unit.pow(_per_sample(exponent, images)) * span + low


def noise(images: torch.Tensor, std: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Add zero-mean Gaussian noise with a per-sample standard deviation."""
    draw = torch.randn(images.shape, generator=gen, device=images.device, dtype=images.dtype)
    return images + draw * _per_sample(std, images)


def blur(images: torch.Tensor, sigma: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma (pixels), one grouped conv per axis.

    All samples share the kernel length of the largest sigma; smaller sigmas get kernels
    whose tails are ~0, so one conv call serves the whole batch.
    """
    b, c, *spatial = images.shape
    n_dims = len(spatial)
    radius = max(1, math.ceil(3.0 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    sig = _per_sample(sigma, images).clamp_min(1e-3).view(b, 1)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sig) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # [b*C, k]
    conv = (F.conv1d, F.conv2d, F.conv3d)[n_dims - 1]
    out = images.reshape(1, b * c, *spatial)
    for axis in range(n_dims):
        shape = [b * c, 1] + [1] * n_dims
        shape[2 + axis] = 2 * radius + 1
        pad = [0, 0] * n_dims
        pad[2 * (n_dims - 1 - axis)] = pad[2 * (n_dims - 1 - axis) + 1] = (
            radius  # F.pad: last axis first
        )
        # Replicate padding has no size limit (reflect needs radius < side).
        out = conv(F.pad(out, pad, mode="replicate"), kernel.view(shape), groups=b * c)
    return out.reshape(images.shape)


@dataclass(frozen=True)
class IntensityTransform:
    """A registry entry: the function and the `AugmentConfig` field holding its range."""

    fn: IntensityFn
    range_field: str


INTENSITY_TRANSFORMS: dict[str, IntensityTransform] = {
    "brightness": IntensityTransform(brightness, "brightness_range"),
    "contrast": IntensityTransform(contrast, "contrast_range"),
    "gamma": IntensityTransform(gamma, "gamma_range"),
    "noise": IntensityTransform(noise, "noise_std"),
    "blur": IntensityTransform(blur, "blur_sigma"),
}


def get_intensity_transform(name: str) -> IntensityTransform:
    """Look a transform up by name; a wrong name fails with the valid ones."""
    try:
        return INTENSITY_TRANSFORMS[name]
    except KeyError:
        raise KeyError(
            f"unknown intensity transform {name!r}; valid names: {sorted(INTENSITY_TRANSFORMS)}"
        ) from None
