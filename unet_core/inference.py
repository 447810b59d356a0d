"""Inference: sliding-window prediction with Gaussian blending and flip TTA.

Works for 2D and 3D; images larger than the training patch are tiled with overlap and
the tiles blended with a Gaussian weight, so tile borders (where a convolution sees
padding) count less than tile centres.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn


def gaussian_weight(patch: tuple[int, ...], sigma_scale: float = 0.125) -> torch.Tensor:
    """Separable Gaussian importance map of shape `patch`, peak 1, floor > 0."""
    axes = []
    for size in patch:
        coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        axes.append(torch.exp(-0.5 * (coords / max(size * sigma_scale, 1e-6)) ** 2))
    weight = axes[0]
    for axis in axes[1:]:
        weight = weight[..., None] * axis
    return weight.clamp_min(1e-3)  # never zero: every pixel is covered by some weight


def _starts(size: int, patch: int, step: int) -> list[int]:
    if size <= patch:
        return [0]
    count = math.ceil((size - patch) / step) + 1
    return sorted({min(i * step, size - patch) for i in range(count)})


def sliding_window(
    model: nn.Module, images: torch.Tensor, patch: tuple[int, ...], overlap: float = 0.5
) -> torch.Tensor:
    """Blend model logits over overlapping tiles.

    Args:
        images: [B, C, *spatial]; a spatial size smaller than `patch` uses the whole axis.
        patch: tile size per spatial axis.
        overlap: fraction of a tile shared with its neighbour, in [0, 1).

    Returns:
        Logits [B, out_channels, *spatial].
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    spatial = images.shape[2:]
    patch = tuple(min(p, s) for p, s in zip(patch, spatial, strict=True))
    steps = [max(1, int(p * (1 - overlap))) for p in patch]
    weight = gaussian_weight(patch).to(images.device)
    norm = images.new_zeros(spatial, dtype=torch.float32)
    out = None  # allocated at the first tile, which tells the number of output channels
    for corner in itertools.product(
        *(_starts(s, p, st) for s, p, st in zip(spatial, patch, steps, strict=True))
    ):
        window = tuple(slice(c, c + p) for c, p in zip(corner, patch, strict=True))
        logits = model(images[(slice(None), slice(None), *window)]).float()
        if out is None:
            out = images.new_zeros(
                (images.shape[0], logits.shape[1], *spatial), dtype=torch.float32
            )
        out[(slice(None), slice(None), *window)] += logits * weight
        norm[window] += weight
    assert out is not None  # every axis has at least one start, so there is a first tile
    return out / norm


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    patch: tuple[int, ...] | None = None,
    overlap: float = 0.5,
    tta: bool = False,
) -> torch.Tensor:
    """Logits for `images` [B, C, *spatial]; whole-image when `patch` is None.

    With `tta`, logits are averaged over every combination of flips of the spatial axes
    (each prediction flipped back first).
    """
    model.eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        return sliding_window(model, x, patch, overlap) if patch else model(x).float()

    if not tta:
        return run(images)
    dims = list(range(2, images.ndim))
    total, count = run(images), 1  # no flip
    for k in range(1, len(dims) + 1):
        for flip in itertools.combinations(dims, k):
            total = total + run(images.flip(flip)).flip(flip)
            count += 1
    return total / count


def logits_to_mask(
    logits: torch.Tensor, mode: str = "binary", threshold: float = 0.5
) -> torch.Tensor:
    """Label map [B, *spatial] (uint8): sigmoid threshold for binary, argmax for multiclass.

    Multilabel returns [B, C, *spatial] with one 0/1 map per channel.
    """
    if mode == "multiclass":
        return logits.argmax(dim=1).to(torch.uint8)
    masks = (torch.sigmoid(logits) > threshold).to(torch.uint8)
    return masks[:, 0] if mode == "binary" else masks
