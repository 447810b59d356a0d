"""Shared helpers for the model tests: tiny variants of every preset."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from unet_core.models import ModelConfig, get_model_config


def _tiny(name: str, spatial_dims: int | None = None, **overrides: Any) -> ModelConfig:
    """A preset shrunk to a few channels so CPU tests stay fast."""
    small: dict[str, Any] = {"base_channels": 4, "depth": 3, "spatial_dims": spatial_dims}
    return get_model_config(name, **{**small, **overrides})


@pytest.fixture
def tiny() -> Callable[..., ModelConfig]:
    """Factory ``tiny(name, spatial_dims=None, **overrides) -> ModelConfig``."""
    return _tiny


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
