"""The planner: different data give different, explained plans within the memory budget."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from unet_core.data import PreparedStore, write_case, write_manifest
from unet_core.planning import (
    MAX_STEPS_PER_EPOCH,
    MAX_TOTAL_STEPS,
    MIN_BATCH,
    MIN_PATIENCE,
    MIN_STEPS_PER_EPOCH,
    MIN_TOTAL_STEPS,
    STEPS_PER_CASE,
    Fingerprint,
    fingerprint,
    plan,
    sample_bytes,
)

GiB = 2**30


def _fp(shapes, spacings, dtype="<f4", intensity=(0.0, 1.0)) -> Fingerprint:
    return Fingerprint(
        spatial_dims=len(shapes[0]),
        in_channels=1,
        train_cases=len(shapes),
        shapes=tuple(shapes),
        spacings=tuple(spacings),
        dtype=dtype,
        intensity_range=(intensity,),
        fg_percentiles=((-50.0, 250.0),),
        fg_mean=(80.0,),
        fg_std=(40.0,),
        label_share={1: 1.0},
    )


TILES = _fp([(128, 128)] * 12, [(1.0, 1.0)] * 12)
VARIED = _fp([(500, 600), (700, 400), (520, 520)] * 10, [(1.0, 1.0)] * 30)
ISO = _fp([(128, 128, 128)] * 20, [(1.0, 1.0, 1.0)] * 20)
ANISO = _fp([(40, 512, 512)] * 20, [(5.0, 0.8, 0.8)] * 16 + [(2.5, 0.8, 0.8)] * 4)


def _check(result, budget: int) -> None:
    kernels = result.pool_kernels.value
    assert len(kernels) == result.depth.value >= 1
    assert result.batch_size.value >= MIN_BATCH
    patch = result.patch_size.value
    if patch is not None:
        for axis, size in enumerate(patch):
            assert size % math.prod(k[axis] for k in kernels) == 0, (patch, kernels)
        assert MIN_BATCH * sample_bytes(patch, 16) <= budget
    for key, value in result.settings().items():
        assert value.why.strip(), key


@pytest.mark.parametrize("fp", [TILES, VARIED, ISO, ANISO], ids=["tiles", "2d", "iso", "aniso"])
def test_plans_are_valid_and_a_smaller_budget_gives_a_smaller_patch(fp: Fingerprint) -> None:
    big, small = plan(fp, 8 * GiB, 2), plan(fp, GiB // 2, 2)
    _check(big, 8 * GiB)
    _check(small, GiB // 2)
    big_voxels = math.prod(big.patch_size.value or fp.median_shape) * big.batch_size.value
    small_voxels = math.prod(small.patch_size.value or fp.median_shape) * small.batch_size.value
    assert small_voxels <= big_voxels


def test_2d_tiles_3d_and_anisotropic_data_get_different_plans() -> None:
    tiles, iso, aniso = (plan(fp, 4 * GiB, 2) for fp in (TILES, ISO, ANISO))
    # Equal tiles that fit train whole; 12 tiles are 6 batches, so the epoch floor sets
    # the epoch length (several shuffled passes).
    assert tiles.patch_size.value is None
    assert tiles.steps_per_epoch.value == MIN_STEPS_PER_EPOCH
    assert tiles.depth.value == 5  # 128 -> 4 at the bottleneck
    assert len(iso.patch_size.value) == 3 and iso.steps_per_epoch.value >= 1
    # The 5 mm axis waits until the 0.8 mm axes have been pooled to >= 2.5 mm.
    kernels = aniso.pool_kernels.value
    assert kernels[0] == (1, 2, 2) and kernels[1] == (1, 2, 2) and kernels[2][0] == 2
    assert "coarse axis 0" in aniso.pool_kernels.why
    assert iso.pool_kernels.value[0] == (2, 2, 2)
    # Target spacing: median, the anisotropic axis its 10th percentile.
    assert iso.target_spacing.value == (1.0, 1.0, 1.0)
    assert aniso.target_spacing.value[0] == pytest.approx(2.5)
    assert aniso.target_spacing.value[1:] == (0.8, 0.8)


def test_batch_is_capped_by_the_data_share_but_never_below_two() -> None:
    many = _fp([(64, 64)] * 2000, [(1.0, 1.0)] * 2000)
    roomy = plan(many, 64 * GiB, 1)
    assert 2 < roomy.batch_size.value <= 32
    assert plan(TILES, 64 * GiB, 1).batch_size.value == MIN_BATCH  # 12 tiles: 5% < 1 image


def test_epochs_grow_with_the_data_and_tiny_data_gets_a_small_plan() -> None:
    tiny = _fp([(32, 32)] * 6, [(1.0, 1.0)] * 6)
    small, large = plan(tiny, GiB, 1), plan(_fp([(32, 32)] * 600, [(1.0, 1.0)] * 600), GiB, 1)
    steps_small = small.epochs.value * small.steps_per_epoch.value
    steps_large = large.epochs.value * large.steps_per_epoch.value
    assert steps_small < steps_large
    assert steps_small <= 300  # about 250 steps: seconds on a CPU for a tiny model
    assert small.patience.value >= MIN_PATIENCE
    assert large.patience.value >= large.epochs.value // 5


@pytest.mark.parametrize("cases", [6, 12, 84, 600])
def test_epochs_have_at_least_the_floor_and_the_floor_adds_no_steps(cases: int) -> None:
    """Short epochs are lengthened to `MIN_STEPS_PER_EPOCH` (whole images and patches
    alike); the epochs then split the same total steps as before (within one epoch)."""
    fp = _fp([(32, 32)] * cases, [(1.0, 1.0)] * cases)
    whole = plan(fp, GiB, 1)
    patches = plan(fp, GiB, 1, patch_size=(16, 16))
    total = min(max(STEPS_PER_CASE * cases, MIN_TOTAL_STEPS), MAX_TOTAL_STEPS)
    for result in (whole, patches):
        steps, epochs = result.steps_per_epoch.value, result.epochs.value
        assert MIN_STEPS_PER_EPOCH <= steps <= MAX_STEPS_PER_EPOCH
        assert total <= steps * epochs < total + steps
        assert str(MIN_STEPS_PER_EPOCH) in result.steps_per_epoch.why
    assert whole.patch_size.value is None  # whole images keep an epoch length too
    one_pass = math.ceil(cases / whole.batch_size.value)
    assert ("so per-epoch costs" in whole.steps_per_epoch.why) == (one_pass < MIN_STEPS_PER_EPOCH)


def test_ct_like_integers_get_a_ct_window_and_float_images_per_image() -> None:
    ct = plan(_fp([(32, 64, 64)] * 4, [(1.0,) * 3] * 4, "<i2", (-1024.0, 2500.0)), GiB)
    norm = ct.normalization.value
    assert norm.mode == "ct" and norm.clip == (-50.0, 250.0) and norm.mean == (80.0,)
    assert "CT-like" in ct.normalization.why
    assert plan(TILES, GiB).normalization.value.mode == "per_image"
    # Unsigned microscopy counts are integers too, but never negative: not CT.
    counts = _fp([(128, 128)] * 4, [(1.0, 1.0)] * 4, "<u2", (0.0, 4095.0))
    assert plan(counts, GiB).normalization.value.mode == "per_image"


def test_float_cases_on_one_intensity_scale_get_one_window_for_all() -> None:
    """Slabs of one scan: the foreground sits at one raw value, so one window and the
    foreground's stats keep it there, while each slab's own stats move it with the
    slab's background."""
    from dataclasses import replace

    shared = plan(replace(TILES, fg_case_spread=(2.7, 0.12)), GiB).normalization
    assert shared.value.mode == "ct" and "share one intensity scale" in shared.why
    assert shared.value.clip == (-50.0, 250.0) and shared.value.mean == (80.0,)
    two = replace(TILES, fg_case_spread=(2.7, 0.12), in_channels=2)
    assert plan(two, GiB).normalization.value.mode == "dataset"  # one window per channel
    # Scanner gains differ: per-image stats agree better (or not clearly worse): per image.
    for spread in ((0.38, 0.31), (0.24, 0.32), None):
        norm = plan(replace(TILES, fg_case_spread=spread), GiB).normalization.value
        assert norm.mode == "per_image", spread


def _float_cases(tmp_path: Path, gains: list[float]) -> PreparedStore:
    """Cases whose foreground is tissue at 0.8 x gain in a background of 0.3 x gain, on a
    field of zeros whose share grows from case to case (slabs nearer the skull top)."""
    rng = np.random.default_rng(0)
    cases = []
    for i, gain in enumerate(gains):
        image = np.zeros((1, 32, 32), np.float32)
        side = 30 - 4 * i  # less head, more air
        image[0, :side, :side] = 0.3 * gain
        mask = np.zeros((32, 32), np.uint8)
        mask[: side // 2, : side // 2] = 1
        image[0][mask == 1] = 0.8 * gain
        image += rng.normal(0, 0.01, image.shape).astype(np.float32)
        cases.append(write_case(tmp_path, f"c{i}", "train", image, mask, spacing=(1.0, 1.0)))
    write_manifest(tmp_path, cases)
    return PreparedStore(tmp_path)


def test_fingerprint_tells_one_intensity_scale_from_per_case_gains(tmp_path: Path) -> None:
    one_scale = fingerprint(_float_cases(tmp_path / "one", [1.0] * 5))
    assert one_scale.fg_case_spread is not None
    own, shared = one_scale.fg_case_spread
    assert shared < 0.5 * own
    assert plan(one_scale, GiB).normalization.value.mode == "ct"
    gains = fingerprint(_float_cases(tmp_path / "gains", [0.5, 2.0, 1.0, 3.0, 0.7]))
    assert plan(gains, GiB).normalization.value.mode == "per_image"


def test_user_fixed_patch_and_pooling_are_planned_around() -> None:
    kernels = ((2, 2), (2, 2))
    result = plan(VARIED, GiB, 1, kernels=kernels, patch_size=(96, 96))
    assert result.patch_size.value == (96, 96) and result.pool_kernels.value == kernels


def test_fingerprint_reads_the_foreground_intensities_of_a_prepared_set(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cases = []
    for i in range(4):
        image = rng.integers(-1000, -900, (1, 8, 24, 24)).astype(np.int16)  # air
        mask = np.zeros((8, 24, 24), np.uint8)
        mask[2:6, 6:18, 6:18] = 1
        image[0][mask == 1] = rng.integers(40, 80, int(mask.sum()))  # soft tissue
        image[0, 0, 0, :4] = 1200  # bone
        split = "train" if i < 2 else ("val" if i == 2 else "test")
        cases.append(write_case(tmp_path, f"c{i}", split, image, mask, spacing=(3.0, 0.7, 0.7)))
    write_manifest(tmp_path, cases)
    fp = fingerprint(PreparedStore(tmp_path))
    assert fp.train_cases == 2 and fp.dtype == "<i2" and fp.anisotropic_axis == 0
    low, high = fp.fg_percentiles[0]
    assert 40 <= low < high < 80  # the foreground's, not the air's
    result = plan(fp, GiB)
    assert result.normalization.value.mode == "ct"
