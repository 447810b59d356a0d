"""Fixtures and helpers for augmentation tests (``h``: batch, only, seeded, SHAPES)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from unet_core.augment import AugmentConfig

ALL_PROBS = [name for name in AugmentConfig.model_fields if name.endswith("_prob")]
SHAPES = {2: (24, 24), 3: (12, 12, 12)}


def only(**fields: object) -> AugmentConfig:
    """A config with every probability zero except the ones given."""
    base: dict[str, object] = dict.fromkeys(ALL_PROBS, 0.0)
    base.update(fields)
    return AugmentConfig(**base)


def batch(
    spatial_dims: int,
    batch_size: int = 6,
    channels: int = 2,
    labels: tuple[int, ...] = (0, 1, 2),
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images ``[B, C, *S]`` and blocky label masks ``[B, *S]`` (int64)."""
    gen = torch.Generator().manual_seed(seed)
    shape = SHAPES[spatial_dims]
    images = torch.rand((batch_size, channels, *shape), generator=gen)
    coarse = torch.randint(0, len(labels), (batch_size, 1, *[s // 4 for s in shape]), generator=gen)
    index = torch.nn.functional.interpolate(coarse.float(), size=shape, mode="nearest").long()[:, 0]
    return images, torch.tensor(labels)[index]


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def h() -> SimpleNamespace:
    """The helpers above, as a fixture (``--import-mode=importlib`` cannot import siblings)."""
    return SimpleNamespace(batch=batch, only=only, seeded=seeded, SHAPES=SHAPES)


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def spatial_dims(request: pytest.FixtureRequest) -> int:
    """Run a test for 2D images and 3D volumes."""
    return request.param
