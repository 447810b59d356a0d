"""The logged pyfunc model: loaded in-process, used by `unetflow predict`, and served by
a real `mlflow models serve` process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from PIL import Image

from tests.support.net import free_port, http_ok, stop, wait_until
from unet_core.models import create_model, get_model_config
from unet_core.package import InferenceSpec, load_package, save_package
from unetflow import tracking
from unetflow_cli.main import main

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _log_package(tmp_path: Path, monkeypatch, spec: InferenceSpec) -> tuple[Path, str]:
    """An untrained 2D U-Net package logged to a sqlite MLflow: (package, model URI)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    config = get_model_config("unet", base_channels=4, depth=2)
    torch.manual_seed(0)
    package = save_package(tmp_path / "model.pt", create_model(config).state_dict(), config, spec)
    experiment = mlflow.create_experiment("serve", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        example = np.zeros((1, 1, 32, 32), np.float32)
        model = tracking.log_model(package, example, in_channels=1, spatial_dims=2)
    return package, model.model_uri


@pytest.fixture
def logged_model(tmp_path: Path, monkeypatch) -> str:
    return _log_package(tmp_path, monkeypatch, InferenceSpec((0.5,), (0.2,)))[1]


def _ping(port: int) -> bool:
    return http_ok(f"http://127.0.0.1:{port}/ping")


def test_logged_model_predicts_in_process_cli_and_server(logged_model: str, tmp_path: Path):
    batch = np.random.default_rng(0).random((2, 1, 40, 36)).astype(np.float32)
    expected = mlflow.pyfunc.load_model(logged_model).predict(batch)
    assert expected.shape == (2, 40, 36) and expected.dtype == np.uint8

    # The CLI takes the same MLflow URI.
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray((batch[0, 0] * 255).astype(np.uint8)).save(folder / "img.png")
    args = ["predict", "--model", logged_model, "--input", str(folder)]
    assert main([*args, "--output", str(tmp_path / "out")]) == 0
    assert np.asarray(Image.open(tmp_path / "out" / "img.png")).shape == (40, 36)

    port = free_port()
    log = tmp_path / "serve.log"
    bin_dir = Path(sys.executable).parent
    mlflow_bin = str(bin_dir / "mlflow")
    # The server execs `uvicorn` by name: the venv's bin must be on PATH.
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                mlflow_bin,
                "models",
                "serve",
                "-m",
                logged_model,
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_until(lambda: _ping(port), "mlflow models serve", 180, proc=proc, log=str(log))
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": batch.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = np.asarray(json.load(response)["predictions"])
        assert predictions.shape == (2, 40, 36)
        np.testing.assert_array_equal(predictions, expected)

        bad = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": [[1.0, 2.0]]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=60)
        assert err.value.code in (400, 422)
    finally:
        stop(proc)


def test_logged_model_is_code_not_a_pickle(logged_model: str, tmp_path: Path) -> None:
    # Models from code: loading runs the stored entry file, never unpickles an object.
    local = Path(mlflow.artifacts.download_artifacts(logged_model, dst_path=str(tmp_path)))
    names = {p.name for p in local.rglob("*")}
    assert "python_model.pkl" not in names
    assert "pyfunc_entry.py" in names


def test_served_model_resamples_inputs_given_their_spacing(tmp_path: Path, monkeypatch) -> None:
    spec = InferenceSpec((0.5,), (0.2,), target_spacing=(1.0, 1.0))
    package, model_uri = _log_package(tmp_path, monkeypatch, spec)
    served = mlflow.pyfunc.load_model(model_uri)
    batch = np.random.default_rng(1).random((1, 1, 40, 36)).astype(np.float32)
    segmenter = load_package(package)
    # An untrained model: cut at its median probability, so its masks are not uniform
    # (the threshold param reaches the model too: MLflow drops params it has no spec for).
    probs = torch.sigmoid(segmenter.logits(torch.from_numpy(batch)))
    cut = float(probs.median())
    fine = served.predict(batch, params={"spacing": [0.5, 0.5], "threshold": cut})
    expected = segmenter(torch.from_numpy(batch), threshold=cut, spacing=(0.5, 0.5)).numpy()
    assert fine.shape == (1, 40, 36) and np.array_equal(fine, expected)
    # Without a spacing the inputs are taken as they come: another (native-grid) answer.
    native = served.predict(batch, params={"threshold": cut})
    assert np.array_equal(native, segmenter(torch.from_numpy(batch), threshold=cut).numpy())
    assert 0 < native.mean() < 1 and not np.array_equal(fine, native)
    for bad in ([0.5], [0.5, float("nan")]):
        with pytest.raises(ValueError, match=r"params\.spacing \[.*\] needs 2 positive finite"):
            served.predict(batch, params={"spacing": bad})
