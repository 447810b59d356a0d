"""A trained model as one self-describing file: weights, model config, normalisation
and decision rule. Loaded with `weights_only=True`; everything inside is tensors,
numbers and strings.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import nn

from unet_core.data.normalization import Normalization, normalize_batch
from unet_core.data.resample import resample_image, resample_mask, same_spacing
from unet_core.engine.checkpoint import save_checkpoint
from unet_core.inference import logits_to_mask, predict_logits
from unet_core.models import ModelConfig, create_model


@dataclass(frozen=True)
class InferenceSpec:
    """How to turn raw images into masks with this model.

    ``normalization`` and ``clip`` (with ``mean``/``std``) are the training's intensity
    normalisation (`unet_core.data.normalization`); packages written before the modes
    existed read as ``dataset``.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    mode: str = "binary"
    threshold: float = 0.5
    patch: tuple[int, ...] | None = None  # sliding-window tile; None: whole image
    overlap: float = 0.5
    normalization: str = "dataset"  # dataset | per_image | ct
    clip: tuple[float, float] | None = None  # ct: the intensity window
    # Voxel size the training data was resampled to; inputs with another spacing are
    # resampled to it and their masks back. None: trained at native spacing.
    target_spacing: tuple[float, ...] | None = None

    @property
    def norm(self) -> Normalization:
        return Normalization.model_validate(
            {"mode": self.normalization, "clip": self.clip, "mean": self.mean, "std": self.std}
        )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, *spatial] raw -> float32, normalised exactly as in training (the same
        numpy function; per_image mode uses each whole image's own statistics)."""
        out = normalize_batch(images.detach().cpu().float().numpy(), self.norm)
        return torch.from_numpy(out).to(images.device)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> InferenceSpec:
        raw = json.loads(text)
        for key in ("mean", "std", "patch", "clip", "target_spacing"):
            if raw.get(key) is not None:
                raw[key] = tuple(raw[key])
        return cls(**raw)


@dataclass(frozen=True)
class Segmenter:
    """A model with what it needs to turn raw images into masks.

    This is the one inference path: serving (`models:/...`), `unetflow predict`, the test
    evaluation of training and promotion all call it, so a version is judged by exactly
    the path it is served by.
    """

    model: nn.Module
    config: ModelConfig
    spec: InferenceSpec

    def logits(
        self, images: torch.Tensor, tta: bool = False, patch: tuple[int, ...] | None = None
    ) -> torch.Tensor:
        """[B, C, *spatial] raw intensities -> [B, K, *spatial] logits on the model's device.

        Normalised with the training statistics, then predicted whole or by sliding window
        (`patch`, default the spec's tile) with Gaussian blending; `tta` averages flips.
        """
        device = next(self.model.parameters()).device
        x = self.spec.normalize(images).to(device=device)
        return predict_logits(
            self.model, x, patch=patch or self.spec.patch, overlap=self.spec.overlap, tta=tta
        )

    def masks(self, logits: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """Logits -> uint8 masks by the spec's decision rule (`threshold` overrides it)."""
        cut = self.spec.threshold if threshold is None else threshold
        return logits_to_mask(logits, self.spec.mode, cut)

    def __call__(
        self,
        images: torch.Tensor,
        tta: bool = False,
        patch: tuple[int, ...] | None = None,
        threshold: float | None = None,
        spacing: tuple[float, ...] | None = None,
    ) -> torch.Tensor:
        """[B, C, *spatial] raw -> uint8 masks [B, *spatial] (multilabel: [B, L, *spatial]).

        ``spacing``: the inputs' voxel size. When the model was trained on data resampled
        to another (`InferenceSpec.target_spacing`), the images are resampled to it
        (linear), predicted, and the masks resampled back onto the inputs' own grid
        (nearest). None: the inputs are taken as they come (2D images, arrays).
        """
        target = self.spec.target_spacing
        if spacing is None or target is None or same_spacing(spacing, target):
            return self.masks(self.logits(images, tta=tta, patch=patch), threshold)
        raw = images.detach().cpu().numpy()
        moved = np.stack([resample_image(image, spacing, target) for image in raw])
        masks = self.masks(self.logits(torch.from_numpy(moved), tta=tta, patch=patch), threshold)
        return _masks_back(masks, target, spacing, tuple(images.shape[2:])).to(masks.device)


def _masks_back(
    masks: torch.Tensor, spacing: tuple[float, ...], target: tuple[float, ...], shape: tuple
) -> torch.Tensor:
    """uint8 [B, (L,) *grid] on `spacing` -> [B, (L,) *shape] on `target`, nearest."""
    array = masks.cpu().numpy()
    flat = array.reshape(-1, *array.shape[-len(shape) :])  # multilabel: one map per label
    back = np.stack([resample_mask(m, spacing, target, shape=shape) for m in flat])
    return torch.from_numpy(back.reshape(*array.shape[: -len(shape)], *shape))


def save_package(
    path: str | os.PathLike, state_dict: dict, config: ModelConfig, spec: InferenceSpec
) -> Path:
    """Write the package atomically."""
    payload = {
        "format": "unetflow-model/1",
        "model": state_dict,
        "model_config": config.model_dump_json(),
        "inference": spec.to_json(),
    }
    return save_checkpoint(payload, path)


def load_package(
    path: str | os.PathLike | BinaryIO, device: str | torch.device = "cpu"
) -> Segmenter:
    """Rebuild the model in eval mode with its config and inference spec.

    Accepts a model package (`save_package`) or a training checkpoint that carries its
    experiment config and inference spec (what unetflow's Ray Train workers write).

    Raises:
        ValueError: the file is neither, or lacks what inference needs.
    """
    source = path if hasattr(path, "read") else Path(path)  # a file, or bytes in memory
    payload = torch.load(source, map_location=device, weights_only=True)
    if not isinstance(payload, dict):
        raise ValueError(f"{path} is not a unetflow model package or checkpoint")
    if payload.get("format") == "unetflow-model/1":
        config = ModelConfig.model_validate_json(payload["model_config"])
    elif "config" in payload and "model" in payload:
        if "inference" not in payload:
            raise ValueError(
                f"{path} is a checkpoint without normalisation statistics (written by an "
                "older version); use the model package logged to MLflow instead"
            )
        config = ModelConfig.model_validate(json.loads(payload["config"])["model"])
    else:
        raise ValueError(
            f"{path} is not a unetflow model package (format {payload.get('format')!r}) "
            "or training checkpoint; pass model.pt from MLflow or a checkpoint.pt"
        )
    model = create_model(config).to(device)
    model.load_state_dict(payload["model"])
    return Segmenter(model.eval(), config, InferenceSpec.from_json(payload["inference"]))
