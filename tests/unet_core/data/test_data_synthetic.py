"""Synthetic data: determinism, layout, separability, speed, knob validation."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from unet_core.data import generate_synthetic
from unet_core.data.synthetic import preset


@pytest.mark.parametrize("shape", [(32, 40), (12, 16, 16)], ids=["2d", "3d"])
def test_same_seed_is_byte_identical_and_layout_is_right(shape: tuple[int, ...]) -> None:
    images, masks = generate_synthetic(5, shape, seed=3)
    again = generate_synthetic(5, shape, seed=3)
    assert images.tobytes() == again[0].tobytes() and masks.tobytes() == again[1].tobytes()
    assert images.shape == (5, 1, *shape) and images.dtype == np.float32
    assert masks.shape == (5, *shape) and masks.dtype == np.uint8
    assert set(np.unique(masks).tolist()) == {0, 1}
    assert not np.array_equal(images, generate_synthetic(5, shape, seed=4)[0])


def test_images_depend_only_on_seed_and_index() -> None:
    short, _ = generate_synthetic(3, (32, 32), seed=1)
    long, _ = generate_synthetic(6, (32, 32), seed=1)
    assert np.array_equal(short, long[:3])


def test_blobs_are_brighter_than_background_but_not_trivially() -> None:
    images, masks = generate_synthetic(40, (64, 64), seed=0)
    fg, bg = images[:, 0][masks == 1], images[:, 0][masks == 0]
    assert fg.mean() - bg.mean() > 0.25
    # Not a threshold task: a global threshold misclassifies a visible share of pixels.
    threshold = (fg.mean() + bg.mean()) / 2
    errors = ((images[:, 0] > threshold) != masks.astype(bool)).mean()
    assert 0.002 < errors < 0.2
    assert 0.05 < masks.mean() < 0.5


def test_knobs_change_the_output_and_bad_knobs_are_refused() -> None:
    quiet, _ = generate_synthetic(2, (32, 32), seed=0, noise_std=(0.0, 0.0))
    noisy, _ = generate_synthetic(2, (32, 32), seed=0, noise_std=(0.3, 0.3))
    assert np.abs(np.diff(noisy, axis=-1)).mean() > np.abs(np.diff(quiet, axis=-1)).mean()
    with pytest.raises(ValidationError, match="extra"):
        generate_synthetic(2, (32, 32), seed=0, noise=0.1)
    with pytest.raises(ValidationError, match="below foreground"):
        generate_synthetic(2, (32, 32), seed=0, background=(0.5, 0.7), foreground=(0.6, 0.9))
    with pytest.raises(ValueError, match="2D or 3D"):
        generate_synthetic(2, (32,), seed=0)


@pytest.mark.slow
def test_a_small_unet_learns_it_to_dice_090() -> None:
    """The data is learnable: a small U-Net, a few CPU epochs, held-out Dice >= 0.9."""
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("unet_core.models")
    torch.manual_seed(0)
    images, masks = generate_synthetic(240, (64, 64), seed=0)
    x, y = torch.from_numpy(images), torch.from_numpy(masks).float().unsqueeze(1)
    x = (x - x[:200].mean()) / x[:200].std()
    model = models.create_model("unet", in_channels=1, out_channels=1, depth=3, base_channels=8)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(3):  # ~0.97 after 3 epochs; 0.9 leaves room for platform noise
        for i in torch.randperm(200).split(16):
            optim.zero_grad()
            loss_fn(model(x[i]), y[i]).backward()
            optim.step()
    model.eval()
    with torch.no_grad():
        pred = model(x[200:]) > 0
    truth = y[200:] > 0.5
    dice = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    assert dice >= 0.9


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut that maximises the between-class variance."""
    hist, edges = np.histogram(values, bins)
    centres = (edges[:-1] + edges[1:]) / 2
    below, mass = np.cumsum(hist), np.cumsum(hist * centres)
    above = below[-1] - below
    mean_below = mass / np.maximum(below, 1)
    mean_above = (mass[-1] - mass) / np.maximum(above, 1)
    return float(centres[np.argmax(below * above * (mean_below - mean_above) ** 2)])


def test_realistic_preset_defeats_a_global_threshold_and_names_valid_presets() -> None:
    """The easy set is a threshold task (Otsu Dice ~0.99); the realistic one is not."""
    dice = {}
    for name in ("easy", "realistic"):
        images, masks = generate_synthetic(12, (96, 96), seed=0, **preset(name))
        pred, truth = images[:, 0] > _otsu(images[:, 0]), masks == 1
        dice[name] = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    assert dice["easy"] > 0.95
    assert dice["realistic"] < 0.85  # ~0.75 at 192x192: a trained model must beat it
    with pytest.raises(ValueError, match="realistic"):
        preset("hard")


def test_touching_blobs_merge_into_clusters() -> None:
    """With `touching`, blobs sit against each other: fewer, larger connected parts."""
    from scipy.ndimage import label

    def parts(touching: float) -> float:
        knobs = {"n_blobs": (10, 10), "radius": (0.05, 0.05), "touching": touching}
        _, masks = generate_synthetic(8, (96, 96), seed=1, **knobs)
        return float(np.mean([label(m)[1] for m in masks]))

    assert parts(1.0) < 0.7 * parts(0.0)
