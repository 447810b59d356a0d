"""`BatchAugmenter`: the whole augmentation pipeline on a batch, on the batch's device.

Order: exact flips / quarter turns -> one affine + elastic resample -> intensity
transforms in ``config.intensity_order``. Every random parameter is drawn on the CPU from
a generator derived from the caller's, in a fixed order, so a seed gives the same
transforms on any device; only the dense noise is drawn on the device itself.

Example:
    >>> aug = BatchAugmenter(AugmentConfig(), spatial_dims=2)
    >>> gen = torch.Generator().manual_seed(0)
    >>> images, masks = aug(torch.rand(4, 1, 32, 32), torch.zeros(4, 32, 32).long(), gen)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unet_core.augment.config import AugmentConfig
from unet_core.augment.intensity import INTENSITY_TRANSFORMS, IntensityFn
from unet_core.augment.spatial import (
    affine_theta,
    degrees_to_radians,
    elastic_field,
    flip_and_rot90,
    resample,
    rot90_as_flips,
    rotation_matrix,
    subset_apply,
)

_DEVICE_SEED_SALT = 0x5DEECE66D  # decorrelates the device stream from the CPU stream


@dataclass(frozen=True)
class _Draws:
    """All random parameters of one batch, on the CPU (B = batch size, n = spatial dims)."""

    flips: torch.Tensor  # [B, n] bool
    transpose: torch.Tensor  # [B] bool
    resampled: torch.Tensor  # [B] bool, affine or elastic fires
    theta: torch.Tensor  # [B, n, n+1] sampling matrices (identity where affine is off)
    coarse: torch.Tensor  # [B, n, *grid] elastic control points (zero where elastic is off)
    intensity: dict[str, tuple[torch.Tensor, torch.Tensor]]  # name -> (applied [B], value [B])


class BatchAugmenter:
    """Augment a batch of images and label masks together.

    Args:
        config: probabilities and ranges of every transform.
        spatial_dims: 2 for ``[B, C, H, W]`` images, 3 for ``[B, C, D, H, W]`` volumes.
    """

    def __init__(self, config: AugmentConfig, spatial_dims: int) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.config = config
        self.spatial_dims = spatial_dims

    def __repr__(self) -> str:
        return f"BatchAugmenter(spatial_dims={self.spatial_dims}, config={self.config!r})"

    @torch.no_grad()
    def __call__(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment one batch.

        Args:
            images: ``[B, C, *spatial]`` floating point.
            masks: ``[B, *spatial]`` or ``[B, 1, *spatial]`` integer (or bool) labels.
            generator: seeds every draw; ``None`` uses torch's global RNG.

        Returns:
            ``(images, masks)`` with the input shapes, dtypes and device. The inputs are
            not modified.
        """
        squeeze = self._check(images, masks)
        if self.config.is_identity:
            return images, masks
        labels = masks.unsqueeze(1) if squeeze else masks
        cpu_gen, device_gen = _generators(generator, images.device)
        draws = self._draw(images.shape[0], tuple(images.shape[2:]), cpu_gen)

        images = flip_and_rot90(images, draws.flips, draws.transpose, self.spatial_dims)
        labels = flip_and_rot90(labels, draws.flips, draws.transpose, self.spatial_dims)
        images, labels = self._resample(images, labels, draws)
        for name in self.config.intensity_order:
            applied, values = draws.intensity[name]
            index = applied.nonzero().flatten()
            fn = INTENSITY_TRANSFORMS[name].fn
            images = subset_apply(images, index, _bind(fn, values[index], device_gen))
        return images, (labels.squeeze(1) if squeeze else labels)

    def _check(self, images: torch.Tensor, masks: torch.Tensor) -> bool:
        """Validate the layout; return True when masks come without a channel axis."""
        n = self.spatial_dims
        if images.ndim != n + 2 or not images.is_floating_point():
            raise ValueError(
                f"images must be float [B, C, *spatial] with {n} spatial dims, "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        if masks.is_floating_point() or masks.is_complex():
            raise ValueError(
                f"masks must hold integer labels, got {masks.dtype}; pass masks.long()"
            )
        squeeze = masks.ndim == n + 1
        layout = masks.shape if squeeze else masks.shape[:1] + masks.shape[2:]
        if not (squeeze or (masks.ndim == n + 2 and masks.shape[1] == 1)) or layout != (
            images.shape[:1] + images.shape[2:]
        ):
            raise ValueError(
                f"masks must be [B, *spatial] or [B, 1, *spatial] matching images "
                f"{tuple(images.shape)}, got {tuple(masks.shape)}"
            )
        if masks.device != images.device:
            raise ValueError(f"images on {images.device} but masks on {masks.device}")
        return squeeze

    def _draw(self, batch: int, spatial: tuple[int, ...], gen: torch.Generator) -> _Draws:
        """Draw every parameter, always all of them and in one order, for reproducibility."""
        cfg, n = self.config, self.spatial_dims

        def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
            return low + (high - low) * torch.rand(shape or (batch,), generator=gen)

        flips = uniform(0, 1, batch, n) < cfg.flip_prob
        # A quarter turn of a non-square plane would change the shape: only half turns there.
        square = spatial[-1] == spatial[-2]
        k = torch.randint(1, 4, (batch,), generator=gen) if square else torch.full((batch,), 2)
        k = torch.where(uniform(0, 1) < cfg.rot90_prob, k, 0)
        rot_flips, transpose = rot90_as_flips(k, n)

        affine = uniform(0, 1) < cfg.affine_prob
        max_rad = float(degrees_to_radians(torch.tensor(cfg.rotate_deg)))
        angles = uniform(-max_rad, max_rad, *((batch,) if n == 2 else (batch, 3)))
        zoom = uniform(*cfg.scale_range)
        shift = uniform(-cfg.translate_frac, cfg.translate_frac, batch, n)
        theta = affine_theta(rotation_matrix(angles, n), zoom, shift, spatial)
        identity = torch.eye(n, n + 1).expand_as(theta)
        theta = torch.where(affine.view(-1, 1, 1), theta, identity)

        elastic = uniform(0, 1) < cfg.elastic_prob
        grid = (cfg.elastic_grid,) * n
        coarse = torch.randn((batch, n, *grid), generator=gen) * (2.0 * cfg.elastic_magnitude)
        coarse = coarse * elastic.view(-1, *([1] * (n + 1)))

        intensity = {}
        for name in cfg.intensity_order:
            applied = uniform(0, 1) < getattr(cfg, f"{name}_prob")
            values = uniform(*getattr(cfg, INTENSITY_TRANSFORMS[name].range_field))
            intensity[name] = (applied, values)
        return _Draws(flips ^ rot_flips, transpose, affine | elastic, theta, coarse, intensity)

    def _resample(
        self, images: torch.Tensor, labels: torch.Tensor, draws: _Draws
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Resample the affine/elastic samples through one combined grid."""
        index = draws.resampled.nonzero().flatten()
        if index.numel() == 0:
            return images, labels
        spatial = tuple(images.shape[2:])
        theta = draws.theta[index].to(images.device)
        grid = F.affine_grid(theta, [index.numel(), 1, *spatial], align_corners=False)
        grid = grid + elastic_field(draws.coarse[index], spatial, images.device)
        dev_index = index.to(images.device)
        sub_images, sub_labels = resample(
            images.index_select(0, dev_index),
            labels.index_select(0, dev_index),
            grid,
            self.config.padding_mode,
        )
        return images.index_copy(0, dev_index, sub_images), labels.index_copy(
            0, dev_index, sub_labels
        )


def _generators(
    generator: torch.Generator | None, device: torch.device
) -> tuple[torch.Generator, torch.Generator]:
    """A CPU generator for parameters and one on ``device`` for dense noise.

    Both are seeded from one draw of the caller's generator, so the caller's stream
    advances by exactly one number per batch, whatever the configuration.
    """
    seed = int(
        torch.randint(
            0,
            2**62,
            (1,),
            generator=generator,
            device=generator.device if generator is not None else "cpu",
        ).item()
    )
    cpu_gen = torch.Generator().manual_seed(seed)
    device_gen = torch.Generator(device=device).manual_seed(seed ^ _DEVICE_SEED_SALT)
    return cpu_gen, device_gen


def _bind(
    fn: IntensityFn, values: torch.Tensor, gen: torch.Generator
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` with its per-sample values and generator bound, as ``subset_apply`` calls it.

    A function rather than a lambda in the loop, so each call keeps its own ``values``.
    """
    return lambda images: fn(images, values, gen)
