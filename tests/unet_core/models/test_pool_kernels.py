"""Per-axis pooling: an anisotropic volume keeps its coarse axis at the first levels."""

from __future__ import annotations

import pytest
import torch

from unet_core.models import ModelConfig, create_model

KERNELS = ((1, 2, 2), (2, 2, 2))


@pytest.mark.parametrize("preset", ["unet", "unetpp", "attention_unet"])
@pytest.mark.parametrize("upsample", ["transpose", "interpolate"])
def test_anisotropic_3d_forward_keeps_the_shape(tiny, preset: str, upsample: str) -> None:
    cfg = tiny(preset, spatial_dims=3, depth=2, pool_kernels=KERNELS, upsample=upsample)
    model = create_model(cfg).eval()
    x = torch.randn(1, 1, 8, 64, 60)  # 60: not a multiple of 4, padded and cropped back
    features = model.encoder(x[..., :56])
    assert [tuple(f.shape[2:]) for f in features] == [(8, 64, 56), (8, 32, 28), (4, 16, 14)]
    assert model(x).shape == (1, 1, 8, 64, 60)


def test_deep_supervision_outputs_follow_the_kernels(tiny) -> None:
    cfg = tiny("unet", spatial_dims=3, depth=2, pool_kernels=KERNELS, deep_supervision=True)
    outputs = create_model(cfg).train()(torch.randn(2, 1, 8, 32, 32))
    assert [tuple(o.shape[2:]) for o in outputs] == [(8, 32, 32), (8, 16, 16)]


def test_pool_kernels_must_match_depth_and_axes() -> None:
    with pytest.raises(ValueError, match="pool_kernels has 1 levels but depth=2"):
        ModelConfig(spatial_dims=3, depth=2, pool_kernels=((2, 2, 2),))
    with pytest.raises(ValueError, match="needs 3 values of 1"):
        ModelConfig(spatial_dims=3, depth=1, pool_kernels=((3, 2, 2),))
