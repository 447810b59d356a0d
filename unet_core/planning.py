"""A training plan from a data set's fingerprint, in the spirit of nnU-Net's planner.

`fingerprint` summarises a prepared data set (shapes, spacing, intensities, labels,
size); `plan` turns it, a per-worker memory budget and the number of workers into
settings that each carry a one-line reason (`PlannedValue`). The rules, kept small:

- target spacing: the median spacing; on anisotropic data (coarsest / finest median
  spacing > 3) the coarse axis takes its 10th percentile (nnU-Net), so thin-slice
  scans are not thrown away. A recommendation: preparation resamples only when
  `data.target_spacing` is set in params.yaml.
- pooling per axis: an axis is halved at a level while its feature map stays >= 2 x
  `MIN_FEATURE` voxels and its spacing is at most 2x the finest axis's, so a coarse
  (anisotropic) axis starts pooling only once the others have caught up with it;
  at most `MAX_DEPTH` levels. Depth = the number of pooling levels.
- patch: whole images when every case has one shape that fits the budget; else the
  median shape, shrunk (largest physical axis first) until a batch of `MIN_BATCH`
  fits, each axis a multiple of its total pooling.
- batch: what fits the budget, at least `MIN_BATCH`, at most `MAX_BATCH`, and at most
  what keeps one batch under `BATCH_DATA_SHARE` of the train voxels (nnU-Net's 5%).
- normalisation: ``ct`` for integer images whose range spans Hounsfield-like values
  (`planning_norm`): clip to the foreground's 0.5/99.5 percentiles
  and z-score with the foreground's mean/std; else ``per_image`` z-score, unless the
  cases share one intensity scale (their foreground medians agree `SHARED_SCALE_RATIO`
  x better under the train split's mean/std than under each image's own): the ``ct``
  window then fits all cases too.
- steps per epoch: enough batches over all workers to draw the train voxels once
  (whole images: one pass over the train cases), within [`MIN_STEPS_PER_EPOCH`,
  `MAX_STEPS_PER_EPOCH`]. The floor amortises what every epoch costs besides its steps
  (validation, report, checkpoint, tracking): on small data one pass is a handful of
  steps and those fixed costs dominated (+45% wall time on 12 tiles); an epoch of
  whole images then draws the cases in several shuffled passes.
- epochs: enough to reach `STEPS_PER_CASE` optimizer steps per train case, within
  [`MIN_TOTAL_STEPS`, `MAX_TOTAL_STEPS`] steps and at most `MAX_EPOCHS` epochs; when
  the floor sets the epoch length, the epochs split the total steps (rounded down, each
  epoch a little longer) so the floor does not add steps. Early-stopping patience:
  `PATIENCE_SHARE` of the epochs, at least `MIN_PATIENCE` validations.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from unet_core.data.errors import DataError
from unet_core.data.normalization import Normalization
from unet_core.data.prepared import PreparedStore
from unet_core.planning_norm import case_spread, choose_normalization

T = TypeVar("T")

# Activation memory per voxel of the patch and per base channel, in bytes. Measured:
# the tensors autograd keeps for backward in fp32 are <= 114 B for a 2D depth-5 U-Net
# and ~61 B for a 3D depth-4 one; 1.5x that covers the backward's transient buffers.
ACTIVATION_BYTES = 180
MIN_FEATURE = 4  # smallest feature-map edge at the bottleneck (nnU-Net)
MAX_DEPTH = 5  # pooling levels; widths double per level, so 16 base -> 512 at the bottom
MIN_BATCH = 2  # batch statistics and gradient noise need two samples (nnU-Net's minimum)
MAX_BATCH = 32  # beyond this a bigger batch buys fewer, not better, steps
BATCH_DATA_SHARE = 0.05  # one batch covers at most 5% of the train voxels (nnU-Net)
ANISOTROPY = 3.0  # coarsest / finest median spacing above which data is anisotropic
FG_SAMPLES_PER_CASE = 64  # foreground voxels read per case for the intensity percentiles
FG_MAX_CASES = 50  # cases sampled for them: a bounded read on any data set size
MAX_STEPS_PER_EPOCH = 250  # nnU-Net's epoch length: keeps validation regular on big data
# Fewest optimizer steps per epoch. Measured (bench/bench_overhead.py, 2-core CPU, 12
# tiles 128x128): an epoch's fixed costs under Ray Train + MLflow (validation, report,
# checkpoint, the controller waking) were 0.06 s against 0.021 s per step of the
# unplanned default model, i.e. ~3 steps' worth, so 100 steps bring them to ~3% (the
# overhead goal of issue #14). With this floor and the planned model they measured
# 0.31 s of a 41-s epoch (0.8%). A GPU's faster steps need a re-measure there.
MIN_STEPS_PER_EPOCH = 100
STEPS_PER_CASE = 50  # optimizer steps per train case that the plan aims for in total
MIN_TOTAL_STEPS, MAX_TOTAL_STEPS = 250, 25_000
MAX_EPOCHS = 1000
# Patience counts validations; with epochs of >= MIN_STEPS_PER_EPOCH steps, 5 of them are
# >= 500 steps, so noise in one validation cannot stop a run that is still learning.
PATIENCE_SHARE, MIN_PATIENCE = 0.2, 5


@dataclass(frozen=True)
class PlannedValue(Generic[T]):
    """A planned setting and the one-line reason for it."""

    value: T
    why: str


@dataclass(frozen=True)
class Fingerprint:
    """What the plan needs to know about a prepared data set (train split)."""

    spatial_dims: int
    in_channels: int
    train_cases: int
    shapes: tuple[tuple[int, ...], ...]  # per train case
    spacings: tuple[tuple[float, ...], ...]  # per train case
    dtype: str  # most common image dtype of the train cases
    intensity_range: tuple[tuple[float, float], ...]  # per channel, train split
    fg_percentiles: tuple[tuple[float, float], ...]  # per channel (0.5, 99.5) of foreground
    fg_mean: tuple[float, ...]  # per channel, foreground clipped to the percentiles
    fg_std: tuple[float, ...]
    label_share: dict[int, float] = field(default_factory=dict)  # share of cases with label
    # How much the median foreground intensity of a train case moves between cases, in
    # z units, under (per-image stats, the train split's stats); None: < 2 such cases.
    fg_case_spread: tuple[float, float] | None = None
    other_shapes: bool = False  # val/test cases of a shape the train cases lack

    @property
    def median_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in np.median(np.array(self.shapes), axis=0).round())

    @property
    def median_spacing(self) -> tuple[float, ...]:
        return tuple(float(v) for v in np.median(np.array(self.spacings), axis=0))

    @property
    def uniform_shape(self) -> bool:
        """Every case (all splits) has one shape: whole images can be batched."""
        return len(set(self.shapes)) == 1 and not self.other_shapes

    @property
    def train_voxels(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    @property
    def anisotropic_axis(self) -> int | None:
        """The coarse axis when its median spacing is > `ANISOTROPY` x the finest one."""
        spacing = self.median_spacing
        coarse = int(np.argmax(spacing))
        return coarse if spacing[coarse] > ANISOTROPY * min(spacing) else None

    def summary(self) -> list[str]:
        """Readable lines for the plan's header."""
        (lo, hi), (p_lo, p_hi) = self.intensity_range[0], self.fg_percentiles[0]
        labels = ", ".join(f"{k}: {v:.0%}" for k, v in sorted(self.label_share.items()))
        return [
            f"{self.train_cases} train cases, {self.spatial_dims}D, {self.in_channels} channel(s)",
            f"shapes: median {list(self.median_shape)}, "
            f"{'all equal' if self.uniform_shape else 'varying'}",
            f"spacing: median {[round(s, 4) for s in self.median_spacing]}",
            f"intensities: {self.dtype}, range [{lo:g}, {hi:g}], "
            f"foreground 0.5/99.5 percentiles [{p_lo:g}, {p_hi:g}] (channel 0)",
            f"cases holding each label: {labels or 'none'}",
            *self._spread_line(),
        ]

    def _spread_line(self) -> list[str]:
        if self.fg_case_spread is None:
            return []
        own, shared = self.fg_case_spread
        return [
            f"foreground median across train cases: std {own:.3g} z-scored per image, "
            f"{shared:.3g} z-scored with the train split's mean/std"
        ]


def fingerprint(store: PreparedStore) -> Fingerprint:
    """Fingerprint the train split of a prepared data set (manifest plus a bounded sample
    of foreground voxels read at the manifest's stored foreground locations)."""
    manifest = store.manifest
    if manifest.count("train") == 0:
        raise DataError(store.root, "has no train cases to plan from; re-prepare it")
    cases = [store.case(stem) for stem in manifest.stems("train")]
    per_case = _foreground_intensities(store, cases[:FG_MAX_CASES], manifest.in_channels)
    fg = [np.concatenate(v) if v else np.zeros(0) for v in zip(*per_case.values(), strict=True)]
    fg = fg or [np.zeros(0)] * manifest.in_channels
    percentiles, means, stds = [], [], []
    for values in fg:
        lo, hi = np.percentile(values, (0.5, 99.5)) if values.size else (0.0, 1.0)
        clipped = np.clip(values, lo, hi) if values.size else np.zeros(1)
        percentiles.append((float(lo), float(hi)))
        means.append(float(clipped.mean()))
        stds.append(max(float(clipped.std()), 1e-6))
    labels = Counter(label for case in cases for label in case.labels if label != 0)
    return Fingerprint(
        spatial_dims=manifest.spatial_dims,
        in_channels=manifest.in_channels,
        train_cases=len(cases),
        shapes=tuple(case.shape for case in cases),
        spacings=tuple(case.spacing for case in cases),
        dtype=Counter(case.dtype for case in cases).most_common(1)[0][0],
        intensity_range=manifest.intensity_range,
        fg_percentiles=tuple(percentiles),
        fg_mean=tuple(means),
        fg_std=tuple(stds),
        label_share={int(k): v / len(cases) for k, v in sorted(labels.items())},
        other_shapes=not manifest.uniform_shape,
        fg_case_spread=case_spread(per_case, {c.stem: c for c in cases}, manifest),
    )


def _foreground_intensities(
    store: PreparedStore, cases: list, channels: int
) -> dict[str, list[np.ndarray]]:
    """Per case holding foreground, per channel, the image values at up to
    `FG_SAMPLES_PER_CASE` of its foreground voxels (a coordinate read fetches only the
    chunks holding them)."""
    out: dict[str, list[np.ndarray]] = {}
    for case in cases:
        points = [p for label in sorted(case.foreground) for p in case.foreground[label]]
        if not points:
            continue
        coords = np.array(points[:: max(1, len(points) // FG_SAMPLES_PER_CASE)], dtype=np.int64)
        image = store.image(case.stem)
        out[case.stem] = [
            np.asarray(image.vindex[(np.full(len(coords), c), *coords.T)], dtype=np.float64)
            for c in range(channels)
        ]
    return out


@dataclass(frozen=True)
class Plan:
    """Planned settings, each with its reason; `settings` maps them to config keys."""

    fingerprint: Fingerprint
    memory_bytes: int
    workers: int
    target_spacing: PlannedValue[tuple[float, ...]]
    patch_size: PlannedValue[tuple[int, ...] | None]
    depth: PlannedValue[int]
    pool_kernels: PlannedValue[tuple[tuple[int, ...], ...]]
    batch_size: PlannedValue[int]
    normalization: PlannedValue[Normalization]
    steps_per_epoch: PlannedValue[int]
    epochs: PlannedValue[int]
    patience: PlannedValue[int]

    def settings(self) -> dict[str, PlannedValue[Any]]:
        """Dotted config key -> planned value (target spacing is not a training setting)."""
        return {
            "data.patch_size": self.patch_size,
            "data.normalization": self.normalization,
            "model.spatial_dims": PlannedValue(self.fingerprint.spatial_dims, "the data's"),
            "model.in_channels": PlannedValue(self.fingerprint.in_channels, "the data's"),
            "model.depth": self.depth,
            "model.pool_kernels": self.pool_kernels,
            "train.batch_size": self.batch_size,
            "train.steps_per_epoch": self.steps_per_epoch,
            "train.epochs": self.epochs,
            "train.early_stopping.patience": self.patience,
        }


def pooling(patch: tuple[int, ...], spacing: tuple[float, ...]) -> tuple[tuple[int, ...], ...]:
    """Pool kernels per level: halve an axis while it stays >= 2 x `MIN_FEATURE` voxels
    and its spacing is at most 2x the finest one (coarse axes join later)."""
    size, spacing_now = list(patch), list(spacing)
    kernels: list[tuple[int, ...]] = []
    while len(kernels) < MAX_DEPTH:
        finest = min(spacing_now)
        kernel = tuple(
            2 if s >= 2 * MIN_FEATURE and sp <= 2 * finest else 1
            for s, sp in zip(size, spacing_now, strict=True)
        )
        if 2 not in kernel:
            break
        kernels.append(kernel)
        size = [s // k for s, k in zip(size, kernel, strict=True)]
        spacing_now = [sp * k for sp, k in zip(spacing_now, kernel, strict=True)]
    return tuple(kernels) or ((2,) * len(patch),)  # depth >= 1: the model pads tiny inputs


def total_pooling(kernels: tuple[tuple[int, ...], ...], dims: int) -> tuple[int, ...]:
    return tuple(math.prod(k[a] for k in kernels) for a in range(dims))


def sample_bytes(patch: tuple[int, ...], base_channels: int) -> int:
    """Rough training memory of one sample (see `ACTIVATION_BYTES`)."""
    return math.prod(patch) * base_channels * ACTIVATION_BYTES


def _fit_patch(
    fp: Fingerprint, budget: int, base_channels: int, kernels: tuple | None
) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...], bool]:
    """(patch divisible by its pooling, kernels, shrunk?) for `MIN_BATCH` samples."""
    patch, spacing, shrunk = list(fp.median_shape), fp.median_spacing, False
    while True:
        levels = kernels or pooling(tuple(patch), spacing)
        factor = total_pooling(levels, fp.spatial_dims)
        fitted = tuple(-(-p // f) * f for p, f in zip(patch, factor, strict=True))
        if MIN_BATCH * sample_bytes(fitted, base_channels) <= budget:
            return fitted, levels, shrunk
        physical = [p * s for p, s in zip(fitted, spacing, strict=True)]
        axis = max(range(len(fitted)), key=lambda a: (physical[a], a))
        if fitted[axis] - factor[axis] < 2 * MIN_FEATURE:
            return fitted, levels, True  # as small as pooling allows: the budget loses
        patch, shrunk = list(fitted), True
        patch[axis] = fitted[axis] - factor[axis]


def plan(
    fp: Fingerprint,
    memory_bytes: int,
    workers: int = 1,
    *,
    base_channels: int = 16,
    kernels: tuple[tuple[int, ...], ...] | None = None,
    patch_size: tuple[int, ...] | None = None,
) -> Plan:
    """Plan training for `fp` within `memory_bytes` of activation memory per worker.

    Args:
        workers: data-parallel workers; an epoch's steps are split among them.
        base_channels: the model's width at full resolution (memory scales with it).
        kernels: pooling the user fixed (model.depth/pool_kernels); None: planned.
        patch_size: a patch the user fixed; None: planned.
    """
    if patch_size is None:
        patch, levels, shrunk = _fit_patch(fp, memory_bytes, base_channels, kernels)
    else:
        patch, shrunk = tuple(patch_size), False
        levels = kernels or pooling(patch, fp.median_spacing)
    whole = patch_size is None and fp.uniform_shape and not shrunk
    batch = _batch(fp, patch, memory_bytes, base_channels)
    steps, epochs = _steps_and_epochs(fp, patch, whole, batch.value, workers)
    return Plan(
        fingerprint=fp,
        memory_bytes=memory_bytes,
        workers=workers,
        target_spacing=_target_spacing(fp),
        patch_size=_patch_value(fp, patch, whole, shrunk, memory_bytes, patch_size),
        depth=PlannedValue(
            len(levels),
            f"pooling levels until an axis reaches {MIN_FEATURE}"
            f" voxels at the bottleneck (at most {MAX_DEPTH})",
        ),
        pool_kernels=PlannedValue(levels, _pooling_why(fp)),
        batch_size=batch,
        normalization=_normalization(fp),
        steps_per_epoch=steps,
        epochs=epochs,
        patience=_patience(epochs.value),
    )


def _target_spacing(fp: Fingerprint) -> PlannedValue[tuple[float, ...]]:
    spacing, axis = list(fp.median_spacing), fp.anisotropic_axis
    why = "median spacing of the train cases"
    if axis is not None:
        spacing[axis] = float(np.percentile([s[axis] for s in fp.spacings], 10))
        why = (
            f"median spacing; anisotropic (axis {axis} > {ANISOTROPY:g}x the finest), "
            "so that axis takes its 10th percentile"
        )
    # A recommendation, not applied: resampling changes the prepared data (and its
    # version), so the user opts in with `data.target_spacing` in params.yaml.
    return PlannedValue(tuple(spacing), why)


def _pooling_why(fp: Fingerprint) -> str:
    axis = fp.anisotropic_axis
    rule = f"halve an axis while >= {2 * MIN_FEATURE} voxels and spacing <= 2x the finest"
    if axis is None:
        return rule
    return f"{rule}: coarse axis {axis} pools only once the others reach its spacing"


def _patch_value(
    fp: Fingerprint, patch, whole: bool, shrunk: bool, budget: int, fixed
) -> PlannedValue[tuple[int, ...] | None]:
    mib = budget / 2**20
    if fixed is not None:
        return PlannedValue(tuple(fixed), "set by the config")
    if whole:
        return PlannedValue(
            None,
            f"whole images: all cases are {list(fp.median_shape)} and "
            f"{MIN_BATCH} fit in {mib:.0f} MiB",
        )
    reason = (
        (
            f"median shape {list(fp.median_shape)} shrunk (largest physical axis first) "
            f"until {MIN_BATCH} fit in {mib:.0f} MiB"
        )
        if shrunk
        else (f"median shape {list(fp.median_shape)} (cases differ in shape)")
    )
    return PlannedValue(tuple(patch), f"{reason}; a multiple of the pooling per axis")


def _batch(fp: Fingerprint, patch, budget: int, base_channels: int) -> PlannedValue[int]:
    fits = budget // sample_bytes(patch, base_channels)
    share = round(BATCH_DATA_SHARE * fp.train_voxels / math.prod(patch))
    value = max(MIN_BATCH, min(fits, share, MAX_BATCH))
    why = (
        f"{fits} fit in memory, {share} keep a batch under {BATCH_DATA_SHARE:.0%} of the "
        f"train voxels; within [{MIN_BATCH}, {MAX_BATCH}]"
    )
    return PlannedValue(int(value), why)


def _normalization(fp: Fingerprint) -> PlannedValue[Normalization]:
    return PlannedValue(*choose_normalization(fp))


def _steps_and_epochs(
    fp: Fingerprint, patch, whole: bool, batch: int, workers: int
) -> tuple[PlannedValue[int], PlannedValue[int]]:
    """Steps per epoch (one pass, within [`MIN_STEPS_PER_EPOCH`, `MAX_STEPS_PER_EPOCH`])
    and epochs (the total steps split into such epochs)."""
    if whole:
        need = -(-fp.train_cases // (batch * workers))
        unit = "to pass over the train cases once"
    else:
        need = -(-fp.train_voxels // (batch * math.prod(patch) * workers))
        unit = "to draw the train voxels once"
    total = min(max(STEPS_PER_CASE * fp.train_cases, MIN_TOTAL_STEPS), MAX_TOTAL_STEPS)
    value = min(max(need, MIN_STEPS_PER_EPOCH), MAX_STEPS_PER_EPOCH)
    epochs = min(max(-(-total // value), 1), MAX_EPOCHS)
    why = (
        f"batches per worker for {workers} worker(s) {unit} ({need}), within "
        f"[{MIN_STEPS_PER_EPOCH}, {MAX_STEPS_PER_EPOCH}]"
    )
    if need < MIN_STEPS_PER_EPOCH:
        # The floor sets the length: split the total into whole epochs of >= the floor,
        # so the plan trains the same number of steps as without it (not one more epoch).
        epochs = min(max(total // MIN_STEPS_PER_EPOCH, 1), MAX_EPOCHS)
        value = min(-(-total // epochs), MAX_STEPS_PER_EPOCH)
        why += ", so per-epoch costs (validation, checkpoint, report) stay small"
    epochs_why = (
        f"{total} optimizer steps ({STEPS_PER_CASE} per train case within "
        f"[{MIN_TOTAL_STEPS}, {MAX_TOTAL_STEPS}]) at {value} per epoch"
    )
    return PlannedValue(int(value), why), PlannedValue(int(epochs), epochs_why)


def _patience(epochs: int) -> PlannedValue[int]:
    value = max(MIN_PATIENCE, math.ceil(PATIENCE_SHARE * epochs))
    why = f"{PATIENCE_SHARE:.0%} of {epochs} epochs, at least {MIN_PATIENCE}"
    return PlannedValue(value, why)
