"""The reference: a segmentation pipeline written the way a MONAI user writes one.

BasicUNet, DiceCELoss(sigmoid=True), dictionary transforms (intensity scaling, pad,
random 96x96 crops (3D: 96x96x16, thin slabs zero-padded to 16), flips, 90-degree rotations), a CacheDataset,
Adam at lr 1e-3, batch 8 (3D: 2), and sliding-window inference on the held-out test
cases. Nothing here is tuned: it is the tutorials' recipe, so a default that cannot
beat it is a weak default.

Both pipelines of `bench_quality.py` share the clock (`TrainClock`) and the score
(`global_dice`), so only the recipes differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

Case = tuple[np.ndarray, np.ndarray]  # (image [C, *spatial] float32, mask [*spatial] uint8)
CROP_2D, CROP_3D = (96, 96), (96, 96, 16)
MIN_SIDE = 16  # BasicUNet pools four times: a side under 16 pools to nothing
BATCH_2D, BATCH_3D = 8, 2


class BudgetSpent(Exception):
    """Raised from inside a training loop when its time budget is used up."""


def score_times(budget_s: float, per_budget: int, early_halvings: int) -> tuple[float, ...]:
    """Training seconds at which both pipelines are scored: every `budget_s / per_budget`
    seconds, plus an early-dense geometric run `budget_s / per_budget * 2 ** (-k / 2)`,
    k = 1 .. 2 * `early_halvings` (a factor of about 1.41 apart): the time to a plateau
    that is reached in the first interval is then resolved to that factor, not to a
    whole interval."""
    every = budget_s / per_budget
    linear = [every * k for k in range(1, per_budget + 1)]
    early = [every * 2 ** (-k / 2) for k in range(1, 2 * early_halvings + 1)]
    return tuple(sorted(set(early + linear)))


@dataclass
class TrainClock:
    """Training seconds: wall time since `start()`, less the time spent scoring; the
    model is scored at the first step after each of `times` (training seconds)."""

    budget_s: float
    times: tuple[float, ...]
    points: list[tuple[float, float]] = field(default_factory=list)  # (train s, Dice)
    _start: float = 0.0
    _paused: float = 0.0
    _next: int = 0  # index into `times` of the next score
    _last_step: int = -1

    def start(self) -> None:
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self._start - self._paused

    def spent(self) -> bool:
        return self.elapsed() >= self.budget_s

    def maybe_score(self, score: Callable[[], float], step: int, force: bool = False) -> None:
        """Score after `step` training steps (or epochs) once the next scheduled time
        passed (all passed times count as one), or when `force`d and the model changed
        since the last score; off the clock."""
        now = self.elapsed()
        if step == self._last_step:
            return
        due = self._next < len(self.times) and now >= self.times[self._next]
        if not (due or force):
            return
        while self._next < len(self.times) and now >= self.times[self._next]:
            self._next += 1
        paused = time.perf_counter()
        dice = score()
        self._paused += time.perf_counter() - paused
        self.points.append((now, dice))
        self._last_step = step


def global_dice(preds: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> float:
    """Dice over all voxels of the split (what unetflow logs as test_dice): 2|P&T|/(|P|+|T|)."""
    inter = sum(
        int(np.logical_and(p > 0, t > 0).sum()) for p, t in zip(preds, targets, strict=True)
    )
    total = sum(
        int((p > 0).sum()) + int((t > 0).sum()) for p, t in zip(preds, targets, strict=True)
    )
    return 2 * inter / total if total else 1.0


def crop_size(cases: Sequence[Case], spatial_dims: int) -> tuple[int, ...]:
    """96x96 (3D: 96x96x16), shrunk to the smallest case as a user would, but never
    under `MIN_SIDE` (thinner cases are zero-padded up to it by `SpatialPadd`)."""
    crop = CROP_2D if spatial_dims == 2 else CROP_3D
    smallest = [min(image.shape[1 + k] for image, _ in cases) for k in range(spatial_dims)]
    return tuple(max(MIN_SIDE, min(c, s)) for c, s in zip(crop, smallest, strict=True))


def _transforms(crop: tuple[int, ...]):
    from monai import transforms as mt

    keys = ["image", "label"]
    cached = mt.Compose(
        [
            mt.EnsureChannelFirstd(keys, channel_dim=0),
            mt.ScaleIntensityd("image"),
            mt.SpatialPadd(keys, spatial_size=crop),
            mt.EnsureTyped(keys, dtype=torch.float32),
        ]
    )
    random = mt.Compose(
        [
            mt.RandSpatialCropd(keys, roi_size=crop, random_size=False),
            mt.RandFlipd(keys, prob=0.5, spatial_axis=0),
            mt.RandFlipd(keys, prob=0.5, spatial_axis=1),
            mt.RandRotate90d(keys, prob=0.5, spatial_axes=(0, 1)),
        ]
    )
    return cached, random


def _predict(
    model: torch.nn.Module, cases: Sequence[Case], crop: tuple[int, ...]
) -> list[np.ndarray]:
    """Binary masks of raw test cases by sliding-window inference, as in MONAI's tutorials."""
    from monai.inferers import sliding_window_inference
    from monai.transforms import ScaleIntensity

    scale = ScaleIntensity()
    model.eval()
    preds = []
    with torch.no_grad():
        for image, _ in cases:
            x = torch.as_tensor(scale(image), dtype=torch.float32)[None]
            logits = sliding_window_inference(x, crop, sw_batch_size=4, predictor=model)
            preds.append((torch.sigmoid(logits)[0, 0] > 0.5).numpy().astype(np.uint8))
    model.train()
    return preds


def train_reference(
    train: Sequence[Case], test: Sequence[Case], spatial_dims: int, clock: TrainClock, seed: int = 0
) -> list[tuple[float, float]]:
    """Train the reference until `clock`'s budget is spent; returns its (train s, Dice) curve."""
    from monai.data import CacheDataset, DataLoader
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNet
    from monai.transforms import Compose
    from monai.utils import set_determinism

    set_determinism(seed)
    clock.start()
    crop = crop_size(train, spatial_dims)
    cached, random = _transforms(crop)
    data = [{"image": image, "label": mask[None]} for image, mask in train]
    dataset = CacheDataset(data, transform=Compose([cached, random]), progress=False)
    batch = BATCH_2D if spatial_dims == 2 else BATCH_3D
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0)
    in_channels = train[0][0].shape[0]
    model = BasicUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1)
    loss_fn = DiceCELoss(sigmoid=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def score() -> float:
        return global_dice(_predict(model, test, crop), [mask for _, mask in test])

    step = 0
    while not clock.spent():
        for item in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(item["image"]), item["label"])
            loss.backward()
            optimizer.step()
            step += 1
            if clock.spent():
                break
            clock.maybe_score(score, step)
    clock.maybe_score(score, step, force=True)
    return clock.points
