"""Shared fixtures: tiny data sets and project folders, built on the fly."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

# Ray reads its auth mode at import: token auth on before any test imports ray.
os.environ.setdefault("RAY_AUTH_MODE", "token")
# A local Ray stays on 127.0.0.1 (Ray otherwise rewrites it to the machine's outward IP).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# No telemetry from the test Prefect server: it only adds SQLite lock contention.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A busy 2-core CI machine can take longer than the 20-s default to start the temporary
# Prefect server that a flow run without PREFECT_API_URL uses.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

REPO = Path(__file__).resolve().parents[1]

TINY_PARAMS = {
    "data": {
        "source": "synthetic",
        "folder": None,
        "spatial_dims": 2,
        "synthetic": {"num_images": 40, "shape": [32, 32], "seed": 7},
        "split": {"fractions": [0.6, 0.2, 0.2], "seed": 7},
    }
}


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A fresh project folder with the repo's dvc.yaml and a tiny params.yaml (no git)."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    (root / "params.yaml").write_text(yaml.safe_dump(TINY_PARAMS))
    return root


def make_raw_folder(root: Path, n: int = 8) -> Path:
    """`<root>/raw` with `n` 32x32 PNG images/ + masks/ (0/255) pairs; returns it."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / "raw" / sub).mkdir(parents=True)
    for i in range(n):
        mask = rng.random((32, 32)) > 0.7
        image = (mask * 150 + rng.integers(0, 80, (32, 32))).astype(np.uint8)
        Image.fromarray(image).save(root / "raw" / "images" / f"s{i}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "raw" / "masks" / f"s{i}.png")
    return root / "raw"


@pytest.fixture
def raw_folder():
    """Builds `<root>/raw` with `n` 32x32 PNG images/ + masks/ (0/255) pairs; returns it."""
    return make_raw_folder


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny prepared data set (manifest + one zarr array per case), shared by the session."""
    from unetflow.data_params import DataParams
    from unetflow.prepare import prepare

    out = tmp_path_factory.mktemp("prepared") / "prepared"
    prepare(DataParams.model_validate(TINY_PARAMS["data"]), out)
    return out


@pytest.fixture(scope="session")
def cli_training(tmp_path_factory: pytest.TempPathFactory):
    """One tiny `unetflow train` through the console script, shared by the tests that read
    its output and what it wrote (`tests/support/cli_training.py`)."""
    from tests.support.cli_training import run_cli_training

    return run_cli_training(tmp_path_factory.mktemp("cli-training"), make_raw_folder)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray (2 CPUs, token auth, 127.0.0.1) shared by the session's Ray tests."""
    import ray

    os.environ.pop("RAY_ADDRESS", None)
    ray.init(
        num_cpus=2,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=0,
        _node_ip_address="127.0.0.1",
    )
    yield
    ray.shutdown()
