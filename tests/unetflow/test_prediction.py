"""Prediction at scale: Ray Data workers write what the sequential path writes, and a
job over an S3 prefix that is killed midway finishes on rerun without redoing cases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import REPO
from tests.support.s3 import s3_server
from unet_core.models import create_model, get_model_config
from unet_core.package import InferenceSpec, load_package, save_package
from unetflow import prediction

pytestmark = [pytest.mark.integration]


def _package(path: Path, preset: str = "unet", base: int = 4) -> Path:
    config = get_model_config(preset, base_channels=base, depth=2)
    torch.manual_seed(0)
    spec = InferenceSpec((100.0,), (50.0,))
    return save_package(path, create_model(config).state_dict(), config, spec)


def _pngs(folder: Path, n: int, size: int = 48) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 255, (size, size + i), dtype=np.uint8)
        Image.fromarray(image).save(folder / f"img{i:03d}.png")
    return sorted(folder.iterdir())


def _masks(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(folder.iterdir()):
        if path.name.endswith(".nii.gz"):
            out[path.name] = np.asarray(nib.load(path).dataobj)
        else:
            out[path.name] = np.asarray(Image.open(path))
    return out


@pytest.mark.slow
def test_ray_workers_write_exactly_the_sequential_masks(tmp_path: Path, ray_local) -> None:
    segmenter = load_package(_package(tmp_path / "model.pt"))
    inputs = [str(p) for p in _pngs(tmp_path / "in", 6)]
    results = {}
    for name, run in (
        ("local", lambda jobs, opts: prediction.run_local(segmenter, jobs, opts)),
        ("ray", lambda jobs, opts: prediction.run_ray(segmenter, jobs, opts, 2, False)),
    ):
        out = tmp_path / name
        out.mkdir()
        jobs, done = prediction.plan_jobs(inputs, str(out))
        assert done == 0
        lines = list(run(jobs, prediction.Options(tta=True)))
        assert len(lines) == 6
        results[name] = _masks(out)
    assert sorted(results["ray"]) == [f"img{i:03d}.png" for i in range(6)]
    for key, mask in results["local"].items():
        assert np.array_equal(results["ray"][key], mask), key


def test_rerun_skips_cases_whose_mask_exists(tmp_path: Path) -> None:
    inputs = [str(p) for p in _pngs(tmp_path / "in", 4)]
    out = tmp_path / "out"
    out.mkdir()
    (out / "img001.png").write_bytes(b"kept")
    (out / ".tmp-img002.png").write_bytes(b"a crash's leftover temp file")
    jobs, done = prediction.plan_jobs(inputs, str(out))
    assert done == 1
    assert [Path(j.dest).name for j in jobs] == ["img000.png", "img002.png", "img003.png"]


def _outputs(client, bucket: str) -> dict[str, str]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix="masks/").get("Contents", [])
    return {o["Key"]: o["ETag"] + str(o["LastModified"]) for o in listed}


@pytest.mark.slow
def test_s3_prediction_killed_midway_finishes_on_rerun(tmp_path: Path) -> None:
    n = 24
    model = _package(tmp_path / "model.pt", base=8)
    with s3_server() as s3:
        client = s3.client()
        bucket = s3.create_bucket("predict-bucket")
        for path in _pngs(tmp_path / "in", n, size=96):
            client.upload_file(str(path), bucket, f"images/{path.name}")
        env = {**os.environ, **s3.env(), "PYTHONPATH": str(REPO)}
        argv = [sys.executable, "-m", "unetflow_cli", "predict", "--model", str(model)]
        argv += ["--input", f"s3://{bucket}/images", "--output", f"s3://{bucket}/masks"]
        first = subprocess.Popen(argv, env=env, cwd=tmp_path, start_new_session=True)
        deadline = time.monotonic() + 300
        while len(_outputs(client, bucket)) < 3 and first.poll() is None:
            assert time.monotonic() < deadline, "no mask written within 5 minutes"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        before = _outputs(client, bucket)
        assert 0 < len(before) < n, f"{len(before)} of {n} masks at the kill: not midway"
        rerun = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert f"predicting {n - len(before)} image(s)" in rerun.stdout
        assert f"{len(before)} already done" in rerun.stdout
        after = _outputs(client, bucket)
        assert sorted(after) == [f"masks/img{i:03d}.png" for i in range(n)]
        # The masks written before the kill were not written again.
        assert {key: after[key] for key in before} == before
        body = client.get_object(Bucket=bucket, Key="masks/img007.png")["Body"].read()
        (tmp_path / "m.png").write_bytes(body)
        assert np.asarray(Image.open(tmp_path / "m.png")).shape == (96, 103)
