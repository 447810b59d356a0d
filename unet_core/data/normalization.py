"""Intensity normalisation: the one function that training, validation and inference call.

Three modes, as nnU-Net chooses them from a data set's fingerprint:

- ``dataset``: ``(x - mean) / std`` with the train split's per-channel statistics
  (the manifest's). The default when no plan applies.
- ``per_image``: each image z-scored with its own per-channel mean and std (microscopy,
  MRI: intensities have no absolute meaning, so each image sets its own scale). A
  patch is normalised with the statistics of the whole case it was cut from.
- ``ct``: clip to a fixed window (the foreground's 0.5/99.5 percentiles), then
  ``(x - mean) / std`` with the foreground's statistics (CT: Hounsfield units mean
  the same tissue in every scan, so one global window fits all). The planner also picks
  it for other data whose cases share one intensity scale (slabs of one scan).

Example:
    >>> norm = Normalization(mode="ct", clip=(-100.0, 300.0), mean=(60.0,), std=(40.0,))
    >>> out = normalize_image(image, norm)  # image [C, *spatial] -> float32
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

NormMode = Literal["dataset", "per_image", "ct"]
MIN_STD = 1e-6  # a flat image (or channel) is shifted, not blown up


class Normalization(BaseModel):
    """How raw intensities become model inputs (the `data.normalization` setting)."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="Intensity normalisation")

    mode: NormMode = Field(
        "dataset",
        description="dataset: train mean/std; per_image: each image's own mean/std; "
        "ct: clip to `clip`, then the foreground's mean/std",
    )
    clip: tuple[float, float] | None = Field(
        None, description="ct: intensity window (low, high), e.g. foreground percentiles"
    )
    mean: tuple[float, ...] | None = Field(
        None, description="ct: per-channel mean after clipping; dataset: filled from the data"
    )
    std: tuple[float, ...] | None = Field(
        None, description="ct: per-channel std after clipping; dataset: filled from the data"
    )

    @model_validator(mode="after")
    def _ct_is_complete(self) -> Normalization:
        if self.mode == "ct" and (self.clip is None or self.mean is None or self.std is None):
            raise ValueError(
                "normalization mode 'ct' needs clip, mean and std (the foreground's window "
                "and statistics); run `unetflow plan` to derive them, or use mode per_image"
            )
        if self.clip is not None and self.clip[0] >= self.clip[1]:
            raise ValueError(f"normalization clip {list(self.clip)} needs low < high")
        return self


def image_stats(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(mean, std)`` in float64 of one image ``[C, *spatial]``."""
    flat = image.reshape(image.shape[0], -1).astype(np.float64)
    mean = flat.mean(axis=1)
    std = np.sqrt(np.maximum((flat**2).mean(axis=1) - mean**2, 0.0))
    return mean, std


def normalize_image(
    image: np.ndarray,
    norm: Normalization,
    own_stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Normalise one image ``[C, *spatial]`` (or a patch of it) to float32.

    Args:
        norm: the mode and its parameters (``dataset`` needs mean and std filled in).
        own_stats: ``per_image`` only: the whole case's ``(mean, std)`` when ``image``
            is a patch of it; None computes them from ``image``.
    """
    image = np.asarray(image)
    if norm.mode == "per_image":
        mean, std = own_stats if own_stats is not None else image_stats(image)
    else:
        if norm.mean is None or norm.std is None:
            raise ValueError(f"normalization mode {norm.mode!r} needs mean and std")
        mean, std = np.asarray(norm.mean), np.asarray(norm.std)
    shape = (-1,) + (1,) * (image.ndim - 1)
    out = image.astype(np.float32, copy=True)
    if norm.clip is not None:
        np.clip(out, norm.clip[0], norm.clip[1], out=out)
    mean32 = np.asarray(mean, dtype=np.float32).reshape(shape)
    std32 = np.maximum(np.asarray(std, dtype=np.float32), MIN_STD).reshape(shape)
    return (out - mean32) / std32


def normalize_batch(images: np.ndarray, norm: Normalization) -> np.ndarray:
    """`normalize_image` over a batch ``[B, C, *spatial]`` (each image its own stats)."""
    return np.stack([normalize_image(image, norm) for image in images]) if len(images) else (
        images.astype(np.float32)
    )
