"""Empty-mask conventions, distributed reduction, per-image tables and the accumulator contract."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from unet_core.metrics import (
    MetricAccumulator,
    dice_score,
    hausdorff_distance,
    hd95,
    iou_score,
    list_metrics,
    per_image_metrics,
    precision_score,
    recall_score,
)

EMPTY = np.zeros((6, 7), dtype=bool)
FULL = np.zeros((6, 7), dtype=bool)
FULL[2:4, 3:6] = True


# --- empty masks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "target", "expected"),
    [
        (EMPTY, EMPTY, {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "hd": 0.0}),
        (FULL, EMPTY, {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0, "hd": math.inf}),
        (EMPTY, FULL, {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0, "hd": math.inf}),
        (FULL, FULL, {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "hd": 0.0}),
    ],
)
def test_empty_mask_conventions(pred, target, expected):
    assert dice_score(pred, target) == expected["dice"]
    assert iou_score(pred, target) == expected["iou"]
    assert precision_score(pred, target) == expected["precision"]
    assert recall_score(pred, target) == expected["recall"]
    assert hausdorff_distance(pred, target) == expected["hd"]
    assert hd95(torch.from_numpy(pred), torch.from_numpy(target)) == expected["hd"]


def test_accumulator_empty_conventions_per_image_and_global():
    # Image 0: both empty (Dice 1); image 1: prediction only (Dice 0).
    logits = torch.full((2, 1, 4, 4), -10.0)
    logits[1, 0, :2] = 10.0
    acc = MetricAccumulator(1)
    acc.update(logits, torch.zeros(2, 4, 4))
    result = acc.compute()
    assert result["dice_per_image"] == pytest.approx(0.5)
    assert result["dice"] == 0.0 and result["recall"] == 0.0 and result["precision"] == 0.0
    acc.reset()
    acc.update(torch.full((2, 1, 4, 4), -10.0), torch.zeros(2, 1, 4, 4))
    assert acc.compute()["dice"] == 1.0 and acc.compute()["pixel_accuracy"] == 1.0


# --- Hausdorff by hand ----------------------------------------------------------------------


@pytest.mark.parametrize("spacing", [None, 0.5, (2.0, 0.5)])
def test_hausdorff_of_shifted_square_is_the_shift(spacing):
    a = np.zeros((20, 20), dtype=bool)
    a[5:10, 5:10] = True
    b = np.roll(a, 3, axis=0)  # shifted by 3 rows
    row_size = {None: 1.0, 0.5: 0.5, (2.0, 0.5): 2.0}[spacing]
    assert hausdorff_distance(a, b, spacing=spacing) == pytest.approx(3 * row_size)
    assert hausdorff_distance(a, b, spacing=spacing) == hausdorff_distance(b, a, spacing=spacing)


def test_hd95_ignores_a_single_outlier_that_hausdorff_reports():
    a = np.zeros((40, 40, 5), dtype=bool)
    a[5:25, 5:25, 1:4] = True
    b = a.copy()
    b[38, 38, 2] = True  # one stray voxel far away
    assert hausdorff_distance(a, b) == pytest.approx(np.hypot(14, 14))
    assert hd95(a, b) == 0.0


def test_hausdorff_rejects_bad_spacing_and_shapes():
    with pytest.raises(ValueError, match="spacing needs 2 values"):
        hausdorff_distance(FULL, FULL, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="shapes differ"):
        hausdorff_distance(FULL, FULL[:3])


# --- distributed reduction ------------------------------------------------------------------


def random_batch(mode: str, channels: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, channels, 9, 8, generator=gen)
    if mode == "multiclass":
        return logits, torch.randint(0, channels, (6, 9, 8), generator=gen)
    return logits, torch.randint(0, 2, (6, channels, 9, 8), generator=gen).float()


@pytest.mark.parametrize(
    ("mode", "channels"), [("binary", 1), ("multiclass", 4), ("multilabel", 3)]
)
def test_summed_states_of_two_halves_equal_one_accumulator(mode, channels):
    logits, target = random_batch(mode, channels, seed=channels)
    whole = MetricAccumulator(channels, mode=mode)
    whole.update(logits, target)
    halves = [MetricAccumulator(channels, mode=mode) for _ in range(2)]
    halves[0].update(logits[:2], target[:2])  # unequal halves: averages of averages would differ
    halves[1].update(logits[2:], target[2:])
    halves[0].state.add_(halves[1].state)  # what all_reduce(SUM) does in place
    assert halves[0].compute() == whole.compute()
    assert halves[0].num_images == 6


# Run as a separate script so the workers need nothing from the test module (spawned
# children cannot import it under --import-mode=importlib).
WORKER = """
import json, sys
import torch, torch.distributed as dist
from unet_core.metrics import MetricAccumulator
rank, world, init_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
gen = torch.Generator().manual_seed(0)  # same draws as random_batch("multiclass", 3, seed=0)
logits = torch.randn(6, 3, 9, 8, generator=gen)
target = torch.randint(0, 3, (6, 9, 8), generator=gen)
acc = MetricAccumulator(3, mode="multiclass")
acc.update(logits[rank::world], target[rank::world])
dist.all_reduce(acc.state)
print(json.dumps(acc.compute()))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_gloo_all_reduce_of_state_matches_single_process(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    init_file = str(tmp_path / "init")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(rank), "2", init_file],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]
    single = MetricAccumulator(3, mode="multiclass")
    single.update(*random_batch("multiclass", 3, seed=0))
    # Exact: counts and fixed-point per-image sums add without rounding.
    assert results[0] == results[1] == single.compute()


# --- accumulator contract -------------------------------------------------------------------


def test_state_is_a_1d_float64_cpu_tensor_kept_across_reset():
    acc = MetricAccumulator(3, mode="multiclass")
    state = acc.state
    assert state.dtype == torch.float64 and state.ndim == 1 and state.device.type == "cpu"
    acc.update(*random_batch("multiclass", 3, seed=1))
    assert state.sum() > 0
    acc.reset()
    assert acc.state is state and state.sum() == 0


def test_compute_keys_and_background_default():
    acc = MetricAccumulator(4, mode="multiclass")
    logits, target = random_batch("multiclass", 4, seed=2)
    acc.update(logits, target)
    result = acc.compute()
    required = {"dice", "iou", "pixel_accuracy", "precision", "recall", "dice_per_image"}
    assert required <= set(result)
    assert {f"dice_class{c}" for c in range(4)} <= set(result)
    # Background is excluded from the multiclass average by default.
    assert result["dice"] == pytest.approx(np.mean([result[f"dice_class{c}"] for c in (1, 2, 3)]))
    binary = MetricAccumulator(1)
    binary.update(*random_batch("binary", 1, seed=3))
    assert not any("class" in key for key in binary.compute())


def test_threshold_moves_the_decision():
    logits = torch.full((1, 1, 2, 2), 0.5)  # sigmoid(0.5) ~ 0.62
    target = torch.ones(1, 1, 2, 2)
    low, high = MetricAccumulator(1, threshold=0.5), MetricAccumulator(1, threshold=0.7)
    low.update(logits, target)
    high.update(logits, target)
    assert low.compute()["recall"] == 1.0 and high.compute()["recall"] == 0.0


@pytest.mark.parametrize(
    ("kw", "hint"),
    [
        ({"num_classes": 2}, "num_classes=1"),
        ({"num_classes": 1, "mode": "multiclass"}, ">= 2"),
        ({"num_classes": 1, "threshold": 1.5}, r"\(0, 1\)"),
        ({"num_classes": 1, "include_background": False}, "leave include_background unset"),
        ({"num_classes": 1, "mode": "argmax"}, "choose one of"),
    ],
)
def test_accumulator_refuses_bad_options(kw, hint):
    with pytest.raises(ValueError, match=hint):
        MetricAccumulator(**kw)


def test_update_refuses_channel_mismatch_and_compute_before_update():
    acc = MetricAccumulator(3, mode="multiclass")
    with pytest.raises(RuntimeError, match="before any update"):
        acc.compute()
    with pytest.raises(ValueError, match="num_classes=3"):
        acc.update(torch.randn(1, 4, 5, 5), torch.zeros(1, 5, 5, dtype=torch.long))


# --- per-image tables -----------------------------------------------------------------------


def test_per_image_metrics_binary_rows():
    preds = np.stack([FULL, EMPTY, FULL])
    targets = np.stack([FULL, EMPTY, EMPTY])
    rows = per_image_metrics(torch.from_numpy(preds), targets, spacing=0.5)
    assert [row["index"] for row in rows] == [0, 1, 2]
    assert set(list_metrics()) <= set(rows[0])
    assert [row["dice"] for row in rows] == [1.0, 1.0, 0.0]
    assert [row["hausdorff"] for row in rows] == [0.0, 0.0, math.inf]


def test_per_image_metrics_label_maps_per_class():
    target = np.zeros((1, 10, 10), dtype=np.int64)
    target[0, 1:4, 1:4] = 1
    target[0, 6:9, 6:9] = 2
    pred = target.copy()
    pred[0, 6:9, 6:9] = 0  # class 2 missed entirely
    (row,) = per_image_metrics(pred, target, num_classes=3, metrics=["dice", "hd95"])
    assert row["dice_class1"] == 1.0 and row["dice_class2"] == 0.0 and row["dice"] == 0.5
    assert row["hd95_class1"] == 0.0 and row["hd95_class2"] == math.inf
    assert "iou" not in row
    with pytest.raises(ValueError, match="valid names"):
        per_image_metrics(pred, target, metrics=["hd99"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_accumulator_takes_cuda_inputs_and_keeps_a_cpu_state():
    logits, target = random_batch("multiclass", 4, seed=5)
    on_cpu, on_gpu = (
        MetricAccumulator(4, mode="multiclass"),
        MetricAccumulator(4, mode="multiclass"),
    )
    on_cpu.update(logits, target)
    on_gpu.update(logits.cuda(), target.cuda())
    assert on_gpu.state.device.type == "cpu"
    assert on_gpu.compute() == on_cpu.compute()
