from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from unet_core.data import read_manifest
from unetflow import dvc_data
from unetflow.prepare import main as prepare_main


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_prepare_is_deterministic(project_dir: Path, tmp_path: Path) -> None:
    params = project_dir / "params.yaml"
    assert prepare_main(["--params", str(params), "--out", str(tmp_path / "a")]) == 0
    assert prepare_main(["--params", str(params), "--out", str(tmp_path / "b")]) == 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    manifest = read_manifest(tmp_path / "a")
    assert set(manifest.splits) == {"train", "val", "test"}


def test_prepare_bad_params_exit_2_and_write_nothing(
    project_dir: Path, tmp_path: Path, capsys
) -> None:
    params = project_dir / "params.yaml"
    raw = yaml.safe_load(params.read_text())
    raw["data"]["synthetic"]["shape"] = [32, 32, 32]
    params.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    assert prepare_main(["--params", str(params), "--out", str(out)]) == 2
    assert "spatial_dims" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_dvc_repro_versions_data_and_skips_when_unchanged(project_dir: Path) -> None:
    dvc_data.ensure_repo(project_dir)
    dvc_data.ensure_repo(project_dir)  # idempotent
    assert dvc_data.reproduce(project_dir) is True
    v1 = dvc_data.data_version(project_dir)
    dvc_data.push(project_dir)
    assert dvc_data.reproduce(project_dir) is False  # nothing changed: no work

    raw = yaml.safe_load((project_dir / "params.yaml").read_text())
    raw["data"]["synthetic"]["seed"] = 8
    (project_dir / "params.yaml").write_text(yaml.safe_dump(raw))
    assert dvc_data.reproduce(project_dir) is True
    assert dvc_data.data_version(project_dir) != v1

    # The pushed version comes back byte-identical from the remote.
    raw["data"]["synthetic"]["seed"] = 7
    (project_dir / "params.yaml").write_text(yaml.safe_dump(raw))
    shutil.rmtree(project_dir / "data" / "prepared")
    dvc_data.reproduce(project_dir)
    assert dvc_data.data_version(project_dir) == v1
