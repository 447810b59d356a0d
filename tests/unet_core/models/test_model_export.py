"""Every preset exports with torch.export and the program matches eager outputs."""

from __future__ import annotations

import pytest
import torch

from unet_core.models import create_model, export_model, list_models


@pytest.mark.parametrize("name", list_models())
def test_preset_exports_with_dynamic_batch(name: str) -> None:
    # The preset's graph with few channels: same ops, fast to trace.
    model = create_model(name, base_channels=4, depth=3, deep_supervision=True)
    config = model.config
    size = (21, 26) if config.spatial_dims == 2 else (9, 10, 11)
    model.train()  # export must switch to eval itself and restore the flag
    program = export_model(model, torch.randn(2, config.in_channels, *size))
    assert model.training

    model.eval()
    exported = program.module()
    for batch in (2, 3):  # 3 was not seen at export time: the batch dim is dynamic
        x = torch.randn(batch, config.in_channels, *size)
        with torch.no_grad():
            expected = model(x)
            actual = exported(x)
        assert actual.shape == (batch, config.out_channels, *size)
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_static_export_rejects_another_batch_size() -> None:
    model = create_model("unet", base_channels=4, depth=2)
    program = export_model(model, torch.randn(2, 1, 16, 16), dynamic_batch=False)
    with pytest.raises((RuntimeError, AssertionError)):
        program.module()(torch.randn(3, 1, 16, 16))


def test_attention_unet_export_does_not_touch_attention_maps() -> None:
    model = create_model("attention_unet", base_channels=4, depth=2)
    export_model(model, torch.randn(2, 1, 16, 16))
    assert model.last_attention_maps == []
