"""Patch training from the prepared format: the 3D NIfTI chain (mixed shapes and spacings,
prepared at a target spacing, trained on a Ray worker, predicted back on each input's
grid), the same metrics from a local folder and from S3 (moto over HTTP), and worker
memory that does not grow with the data set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from tests.support.s3 import s3_server
from unet_core.data import DataError, read_manifest
from unet_core.engine import CHECKPOINT_FILE, fit, load_checkpoint
from unet_core.package import load_package, save_package
from unetflow import prediction
from unetflow.builders import build_trainer, check_data, inference_spec, make_loaders
from unetflow.config import parse_config
from unetflow.prepare import main as prepare_main
from unetflow.ray_train import fit_with_ray

pytestmark = pytest.mark.slow


def _nifti_folder(root: Path, n: int) -> tuple[Path, dict[str, tuple]]:
    """`n` tiny volumes of different shapes (16-24 per side) and spacings, int16 images."""
    rng = np.random.default_rng(3)
    geometry = {}
    for sub in ("images", "masks"):
        (root / "raw" / sub).mkdir(parents=True)
    for i in range(n):
        shape = tuple(int(s) for s in rng.integers(16, 25, 3))
        spacing = tuple(float(s) for s in rng.choice([0.5, 0.8, 1.0, 1.5, 3.0], 3))
        affine = np.diag([*spacing, 1.0])
        affine[:3, 3] = rng.uniform(-50, 50, 3)
        grid = np.indices(shape).astype(np.float32)
        centre = [rng.uniform(5, s - 5) for s in shape]
        blob = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) < 4.0**2
        image = (blob * 300 + rng.normal(100, 30, shape)).astype(np.int16)
        nib.save(nib.Nifti1Image(image, affine), root / "raw" / "images" / f"vol{i:02d}.nii.gz")
        mask = nib.Nifti1Image(blob.astype(np.uint8), affine)
        nib.save(mask, root / "raw" / "masks" / f"vol{i:02d}.nii.gz")
        geometry[f"vol{i:02d}"] = (shape, spacing, affine)
    return root / "raw", geometry


TARGET = (2.0, 2.0, 2.0)  # coarser than most sources: small grids, a fast chain


def _cfg_3d(**train):
    return parse_config(
        {
            "name": "chain3d",
            "model": {"preset": "unet", "spatial_dims": 3, "base_channels": 4, "depth": 2},
            "data": {"patch_size": [16, 16, 16]},
            "train": {"epochs": 1, "batch_size": 2, "steps_per_epoch": 3, **train},
            "scaling": {"num_workers": 1},
            "checkpoint": {"max_failures": 0},
        }
    )


def _prepare(raw: Path, out: Path) -> Path:
    # One process: on tiny volumes a second one costs more to start than it saves.
    data = {"source": "folder", "folder": str(raw), "spatial_dims": 3, "workers": 1}
    params = out.parent / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {**data, "target_spacing": list(TARGET)}}))
    assert prepare_main(["--params", str(params), "--out", str(out)]) == 0
    return out


def test_40_nifti_volumes_prepare_train_and_predict_in_each_inputs_geometry(
    tmp_path: Path, ray_local
) -> None:
    """The 3D chain: mixed shapes and spacings -> prepare at a target spacing -> patch
    training on a Ray worker -> prediction writes each mask on its input's grid."""
    raw, geometry = _nifti_folder(tmp_path, 40)
    data_dir = _prepare(raw, tmp_path / "prepared")
    manifest = read_manifest(data_dir)
    assert len(manifest.cases) == 40 and not manifest.uniform_shape
    assert manifest.target_spacing == TARGET
    for case in manifest.cases:
        shape, spacing, affine = geometry[case.stem]
        assert case.spacing == TARGET and case.dtype == "<i2"  # native int16 kept
        assert case.source is not None and case.source.shape == shape
        assert case.source.spacing == pytest.approx(spacing)
        scale = [t / s for s, t in zip(spacing, TARGET, strict=True)]
        assert case.shape == tuple(max(1, round(n / f)) for n, f in zip(shape, scale, strict=True))
        # Same origin, voxel axes scaled to the target: the world stays where it was.
        assert np.allclose(case.affine, affine @ np.diag([*scale, 1.0]))

    # Refused on the driver, before any Ray worker would start, with the fix named.
    whole = parse_config({"model": {"preset": "unet", "spatial_dims": 3}})
    with pytest.raises(DataError, match=r"set data\.patch_size"):
        check_data(whole, data_dir)
    with pytest.raises(DataError, match=r"set data\.patch_size"):
        make_loaders(whole, data_dir, rank=0, world_size=1)
    with pytest.raises(DataError, match=r"3D cases but model\.spatial_dims is 2"):
        check_data(parse_config({}), data_dir)

    cfg = _cfg_3d()
    outcome = fit_with_ray(cfg, data_dir, "chain3d", str(tmp_path / "ray"))
    metrics = outcome.history[0]
    assert np.isfinite(metrics["train_loss"]) and 0.0 <= metrics["val_dice"] <= 1.0
    with outcome.best_checkpoint.as_directory() as ckpt:
        weights = load_checkpoint(Path(ckpt) / CHECKPOINT_FILE)["model"]
    spec = inference_spec(cfg, manifest)
    assert spec.target_spacing == TARGET  # the model carries its grid into prediction
    segmenter = load_package(save_package(tmp_path / "model.pt", weights, cfg.model, spec))

    out = tmp_path / "masks"
    out.mkdir()
    jobs, _ = prediction.plan_jobs(prediction.list_images(str(raw / "images"), 3), str(out))
    assert len(list(prediction.run_local(segmenter, jobs, prediction.Options()))) == 40
    for stem, (shape, _, affine) in geometry.items():
        mask = nib.load(out / f"{stem}.nii.gz")
        assert mask.shape == shape and np.allclose(mask.affine, affine), stem
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}


def _history(data: str | Path, node_cache: Path) -> list[dict[str, float]]:
    cfg = parse_config(
        {
            "model": {"preset": "unet", "base_channels": 4, "depth": 2},
            "data": {"patch_size": [16, 16], "node_cache_dir": str(node_cache)},
            "train": {"epochs": 2, "batch_size": 4, "steps_per_epoch": 2, "seed": 5},
        }
    )
    result = fit(build_trainer(cfg, data, torch.device("cpu")))
    return [{k: v for k, v in e.metrics.items() if k != "lr"} for e in result.history]


@pytest.mark.integration
def test_same_seed_same_metrics_from_a_folder_and_from_s3(
    prepared_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache = tmp_path / "node-cache"  # empty: the S3 run downloads every case it reads
    local = _history(prepared_dir, cache)
    assert not cache.exists()  # a local data set is read in place
    with s3_server() as s3:
        for key, value in s3.env().items():
            monkeypatch.setenv(key, value)
        s3.create_bucket("datasets")
        uri = s3.upload_folder(prepared_dir, "datasets", "tiny/prepared")
        remote = _history(uri, cache)
    assert remote == local and len(local) == 2
    assert len(list(cache.glob("*.zip"))) > 0  # the workers read through the node cache


MEASURE = r"""
import json, resource, sys
import torch
from unetflow.builders import make_loaders
from unetflow.config import parse_config

cfg = parse_config(json.loads(sys.argv[2]))
train, val = make_loaders(cfg, sys.argv[1], rank=0, world_size=1)
next(iter(train))  # imports and first reads done: the baseline
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for epoch in range(2):
    train.dataset.set_epoch(epoch)
    for images, masks in train:
        pass
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("RSS " + json.dumps({"base_kb": base, "peak_kb": peak}))
"""


def _prepare_volumes(root: Path, n: int) -> Path:
    from unet_core.data import write_case, write_manifest

    rng = np.random.default_rng(0)
    cases = []
    for i in range(n):
        image = rng.normal(0, 1, (1, 48, 48, 48)).astype(np.float32)  # 432 KiB each
        mask = (image[0] > 1.5).astype(np.uint8)
        split = "val" if i < 2 else "train"
        cases.append(write_case(root, f"c{i:03d}", split, image, mask, chunks=(16, 16, 16)))
    write_manifest(root, cases, chunks=(16, 16, 16))
    return root


def _worker_growth(data: Path, cfg: dict) -> int:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(data), json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RSS "))
    rss = json.loads(line.removeprefix("RSS "))
    return rss["peak_kb"] - rss["base_kb"]


def test_worker_memory_does_not_grow_with_the_data_set(tmp_path: Path) -> None:
    cfg = {
        "model": {"preset": "unet", "spatial_dims": 3, "base_channels": 4, "depth": 2},
        "data": {"patch_size": [16, 16, 16], "cache_mb": 4},
        "train": {"batch_size": 2, "steps_per_epoch": 40},
    }
    small = _prepare_volumes(tmp_path / "small", 20)  # ~8.6 MiB of voxels
    large = _prepare_volumes(tmp_path / "large", 80)  # ~35 MiB: 4x
    growth_small, growth_large = _worker_growth(small, cfg), _worker_growth(large, cfg)
    # Held at once: a 4 MiB cache and a batch. Loading the splits would add ~26 MiB.
    assert growth_large < growth_small + 12 * 1024, (growth_small, growth_large)
