"""Each preset, shrunk, can overfit one batch on CPU: proof that it can learn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unet_core.models import create_model, list_models

STEPS = 40  # Adam steps; enough for a tiny net to fit one batch


def _one_batch(spatial_dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A noisy image [2, 1, *S] with a bright box and its mask [2, 1, *S] as target."""
    size = (32, 32) if spatial_dims == 2 else (16, 16, 16)
    target = torch.zeros(2, 1, *size)
    box = tuple(slice(s // 4, 3 * s // 4) for s in size)
    target[(0, 0, *box)] = 1.0
    target[(1, 0, *(slice(0, s // 2) for s in size))] = 1.0
    image = target + 0.3 * torch.randn_like(target)
    return image, target


@pytest.mark.parametrize("name", list_models())
def test_preset_overfits_one_batch(name: str) -> None:
    model = create_model(name, base_channels=8, depth=2, in_channels=1, out_channels=1)
    image, target = _one_batch(model.config.spatial_dims)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(image), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[:: STEPS // 8]
