"""Sliding-window inference on the GPU equals the CPU (marker `gpu`)."""

from __future__ import annotations

import pytest
import torch

from unet_core.inference import sliding_window
from unet_core.models import create_model

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize(
    ("name", "size", "patch"),
    [("unet", (70, 53), (32, 32)), ("unet3d", (20, 24, 17), (16, 16, 16))],
)
def test_sliding_window_on_gpu_equals_cpu(name: str, size: tuple, patch: tuple) -> None:
    if not torch.cuda.is_available():
        pytest.fail("no CUDA device: run the gpu tests on a GPU machine")
    torch.manual_seed(0)
    model = create_model(name, base_channels=8, depth=2).eval()
    images = torch.randn(2, 1, *size)
    with torch.no_grad():
        cpu = sliding_window(model, images, patch, overlap=0.5)
        # TF32 would differ from fp32 by ~1e-3; compare full precision on both.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        gpu = sliding_window(model.cuda(), images.cuda(), patch, overlap=0.5).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-4)
