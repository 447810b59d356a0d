"""A trained model as one self-describing file: weights, model config, normalisation
and decision rule. Loaded with `weights_only=True`; everything inside is tensors,
numbers and strings.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from unet_core.engine.checkpoint import save_checkpoint
from unet_core.models import ModelConfig, create_model


@dataclass(frozen=True)
class InferenceSpec:
    """How to turn raw images into masks with this model."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    mode: str = "binary"
    threshold: float = 0.5
    patch: tuple[int, ...] | None = None  # sliding-window tile; None: whole image
    overlap: float = 0.5

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, *spatial] raw -> standardised with the training set's statistics."""
        shape = (1, -1) + (1,) * (images.ndim - 2)
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(shape)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(shape)
        return (images - mean) / std


def save_package(
    path: str | os.PathLike, state_dict: dict, config: ModelConfig, spec: InferenceSpec
) -> Path:
    """Write the package atomically."""
    payload = {
        "format": "unetflow-model/1",
        "model": state_dict,
        "model_config": config.model_dump_json(),
        "inference": json.dumps(spec.__dict__),
    }
    return save_checkpoint(payload, path)


def load_package(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelConfig, InferenceSpec]:
    """Rebuild the model in eval mode with its config and inference spec.

    Accepts a model package (`save_package`) or a training checkpoint that carries its
    experiment config and inference spec (what unetflow's Ray Train workers write).

    Raises:
        ValueError: the file is neither, or lacks what inference needs.
    """
    payload = torch.load(Path(path), map_location=device, weights_only=True)
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
    raw = json.loads(payload["inference"])
    for key in ("mean", "std", "patch"):
        if raw.get(key) is not None:
            raw[key] = tuple(raw[key])
    model = create_model(config).to(device)
    model.load_state_dict(payload["model"])
    return model.eval(), config, InferenceSpec(**raw)
