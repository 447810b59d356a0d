from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.support.s3 import S3Endpoint, s3_server_in_env
from unet_core.data import load_split_with_stems, read_manifest
from unetflow import dvc_data
from unetflow.ingest import main as ingest_main
from unetflow.prepare import main as prepare_main
from unetflow.stats import StatsParams, write_stats
from unetflow_cli.main import main as cli_main


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


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


def _write(params: Path, raw: dict) -> None:
    params.write_text(yaml.safe_dump(raw))


def test_ingest_then_prepare_equals_one_step(project_dir: Path, tmp_path: Path) -> None:
    params = project_dir / "params.yaml"
    assert ingest_main(["--params", str(params), "--out", str(tmp_path / "raw")]) == 0
    assert not list(tmp_path.glob(".ingest-*"))  # staging folder renamed, none left
    two_step = ["--params", str(params), "--raw", str(tmp_path / "raw")]
    assert prepare_main([*two_step, "--out", str(tmp_path / "a")]) == 0
    assert prepare_main(["--params", str(params), "--out", str(tmp_path / "b")]) == 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_ingest_of_a_local_folder_copies_its_files_and_prepares_as_one_step(
    tmp_path: Path, raw_folder
) -> None:
    source = raw_folder(tmp_path / "src", n=6)
    (source / "images" / ".DS_Store").write_bytes(b"hidden: left out")
    params = _folder_params(tmp_path / "params.yaml", str(source), spatial_dims=2)
    assert ingest_main(["--params", str(params), "--out", str(tmp_path / "raw")]) == 0
    assert _digest(tmp_path / "raw" / "images") == {
        k: v for k, v in _digest(source / "images").items() if not k.startswith(".")
    }
    two_step = ["--params", str(params), "--raw", str(tmp_path / "raw")]
    assert prepare_main([*two_step, "--out", str(tmp_path / "a")]) == 0
    assert prepare_main(["--params", str(params), "--out", str(tmp_path / "b")]) == 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert read_manifest(tmp_path / "a").cases[0].dtype == "|u1"  # PNG bytes, not float32


def test_ingest_refuses_a_corrupt_raw_area(project_dir: Path, tmp_path: Path, capsys) -> None:
    params = project_dir / "params.yaml"
    assert ingest_main(["--params", str(params), "--out", str(tmp_path / "raw")]) == 0
    with (tmp_path / "raw" / "masks" / "synthetic-00003.npy").open("r+b") as f:
        f.seek(-1, 2)
        f.write(b"\x07")
    args = ["--params", str(params), "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "p")]
    assert prepare_main(args) == 2
    err = capsys.readouterr().err
    assert "synthetic-00003.npy" in err and "dvc repro ingest" in err
    assert not (tmp_path / "p").exists()


def test_a_raw_area_of_the_old_stacked_format_says_how_to_reingest(
    project_dir: Path, tmp_path: Path, capsys
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    np.save(raw / "images.npy", np.zeros((3, 1, 4, 4), np.float32))
    (raw / "raw.json").write_text(json.dumps({"stems": ["a", "b", "c"], "sha256": {}}))
    args = ["--params", str(project_dir / "params.yaml"), "--raw", str(raw)]
    assert prepare_main([*args, "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert "older ingest" in err and "dvc repro ingest" in err and len(err.splitlines()) == 1


def _groups_per_split(out: Path, pattern: str) -> dict[str, set[str]]:
    found = {}
    for split in ("train", "val", "test"):
        _, _, stems = load_split_with_stems(out, split)
        found[split] = {re.search(pattern, str(s)).group(1) for s in stems}
    return found


@pytest.mark.parametrize("how", ["regex", "csv"])
def test_group_split_keeps_each_group_in_one_split(
    project_dir: Path, tmp_path: Path, how: str
) -> None:
    params = project_dir / "params.yaml"
    raw = yaml.safe_load(params.read_text())
    pattern = r"^synthetic-0+(\d*?)\d$"  # groups of 10 consecutive images ("" = 0-9)
    if how == "regex":
        raw["data"]["split"]["group"] = {"regex": pattern}
    else:
        rows = [f"synthetic-{i:05d},patient{i // 10}" for i in range(40)]
        (project_dir / "groups.csv").write_text("stem,patient\n" + "\n".join(rows) + "\n")
        raw["data"]["split"]["group"] = {"csv": "groups.csv", "column": "patient"}
    _write(params, raw)
    assert prepare_main(["--params", str(params), "--out", str(tmp_path / "out")]) == 0
    found = _groups_per_split(tmp_path / "out", pattern)
    assert sum(len(g) for g in found.values()) == 4  # 4 groups, none in two splits
    assert set().union(*found.values()) == {"", "1", "2", "3"}


def test_group_regex_that_misses_a_stem_names_it(project_dir: Path, tmp_path: Path, capsys) -> None:
    params = project_dir / "params.yaml"
    raw = yaml.safe_load(params.read_text())
    raw["data"]["split"]["group"] = {"regex": r"patient-(\d+)"}
    _write(params, raw)
    assert prepare_main(["--params", str(params), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "data.split.group.regex" in err and "synthetic-00000" in err
    assert not (tmp_path / "out").exists()


def test_group_params_need_exactly_one_source(project_dir: Path, tmp_path: Path, capsys) -> None:
    params = project_dir / "params.yaml"
    raw = yaml.safe_load(params.read_text())
    raw["data"]["split"]["group"] = {"csv": "groups.csv"}
    _write(params, raw)
    assert prepare_main(["--params", str(params), "--out", str(tmp_path / "out")]) == 2
    assert "group.column" in capsys.readouterr().err


def test_stats_metrics_and_plots(prepared_dir: Path, tmp_path: Path) -> None:
    metrics = write_stats(prepared_dir, tmp_path / "stats", StatsParams(intensity_bins=5))
    assert metrics["counts"] == {"train": 24, "val": 8, "test": 8, "total": 40}
    assert abs(sum(metrics["class_balance"].values()) - 1) < 1e-4
    hist = (tmp_path / "stats" / "intensity_hist.csv").read_text().splitlines()
    assert hist[0] == "intensity,count" and len(hist) == 6
    assert sum(int(line.split(",")[1]) for line in hist[1:]) == 40 * 32 * 32
    assert (tmp_path / "stats" / "image_sizes.csv").read_text() == "size,count\n32x32,40\n"


def test_cli_checkout_refuses_a_malformed_version(project_dir: Path, capsys) -> None:
    assert cli_main(["data", "checkout", "latest", "--project-dir", str(project_dir)]) == 2
    err = capsys.readouterr().err
    assert "'latest' is not a DVC md5" in err and len(err.strip().splitlines()) == 1
    assert not (project_dir / ".dvc").exists()  # failed before touching the project


@pytest.mark.slow
def test_dvc_pipeline_reruns_only_what_changed(project_dir: Path) -> None:
    dvc_data.ensure_repo(project_dir)
    dvc_data.ensure_repo(project_dir)  # idempotent
    assert dvc_data.reproduce_stages(project_dir, None) == ["ingest", "prepare", "stats"]
    assert "stats:" in (project_dir / "params.yaml").read_text()  # default section added
    v1 = dvc_data.data_version(project_dir)
    assert dvc_data.reproduce_stages(project_dir, None) == []  # nothing changed: no work

    raw = yaml.safe_load((project_dir / "params.yaml").read_text())
    raw["stats"]["intensity_bins"] = 8  # a stats-only param: only stats reruns
    _write(project_dir / "params.yaml", raw)
    assert dvc_data.reproduce_stages(project_dir, None) == ["stats"]
    assert dvc_data.data_version(project_dir) == v1

    raw["data"]["split"]["seed"] = 8  # a split param: prepare and stats, not ingest
    _write(project_dir / "params.yaml", raw)
    assert dvc_data.reproduce_stages(project_dir, None) == ["prepare", "stats"]
    assert dvc_data.data_version(project_dir) != v1


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """One moto server for the module; credentials reach ingest from the environment."""
    with s3_server_in_env("sources") as server:
        yield server


def _nifti_source(root: Path, n: int) -> dict[str, tuple[tuple[int, ...], np.ndarray]]:
    """`n` tiny int16 volumes of different shapes and affines as NIfTI pairs under `root`."""
    import nibabel as nib

    rng = np.random.default_rng(1)
    geometry = {}
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        shape = (8 + i, 10, 12 - i % 3)
        affine = np.diag([0.5 + i / 10, 1.0, 2.0, 1.0])
        image = rng.integers(0, 500, shape).astype(np.int16)
        mask = (image > 400).astype(np.uint8)
        nib.save(nib.Nifti1Image(image, affine), root / "images" / f"vol{i}.nii.gz")
        nib.save(nib.Nifti1Image(mask, affine), root / "masks" / f"vol{i}.nii.gz")
        geometry[f"vol{i}"] = (shape, affine)
    (root / "README.txt").write_text("not a case: ingest leaves it out\n")
    return geometry


def _folder_params(path: Path, uri: str, spatial_dims: int) -> Path:
    """params.yaml reading the folder (a path or an s3:// prefix) `uri`."""
    data = {"source": "folder", "folder": uri, "spatial_dims": spatial_dims}
    path.write_text(yaml.safe_dump({"data": {**data, "split": {"fractions": [0.6, 0.2, 0.2]}}}))
    return path


@pytest.mark.integration
def test_mixed_shape_nifti_ingested_from_s3_prepare_locally_and_into_s3(
    s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    geometry = _nifti_source(tmp_path / "src", 6)
    uri = s3_endpoint.upload_folder(tmp_path / "src", "sources", "ct/v1")
    params = _folder_params(tmp_path / "params.yaml", uri, spatial_dims=3)
    raw = tmp_path / "work" / "raw"

    assert ingest_main(["--params", str(params), "--out", str(raw)]) == 0
    # Each case's files as they are (no stacking, no conversion), and nothing else.
    assert _digest(raw / "images") == _digest(tmp_path / "src" / "images")
    assert _digest(raw / "masks") == _digest(tmp_path / "src" / "masks")
    assert sorted(p.name for p in raw.iterdir()) == ["images", "masks", "raw.json"]
    assert sorted(p.name for p in raw.parent.iterdir()) == ["raw"]  # no staging left

    out = tmp_path / "work" / "prepared"
    assert prepare_main(["--params", str(params), "--raw", str(raw), "--out", str(out)]) == 0
    manifest = read_manifest(out)
    assert len(manifest.cases) == 6 and not manifest.uniform_shape
    for case in manifest.cases:
        shape, affine = geometry[case.stem]
        assert case.shape == shape and np.allclose(case.affine, affine)
        assert case.dtype == "<i2"

    # Straight into the bucket: the same cases, so the same data version.
    to_s3 = ["--params", str(params), "--raw", str(raw), "--workers", "1"]
    assert prepare_main([*to_s3, "--out", "s3://sources/ct/prepared"]) == 0
    assert read_manifest("s3://sources/ct/prepared").version() == manifest.version()


MEASURE_INGEST = r"""
import json, sys
from unetflow import ingest, s3

def peak_kb():
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:"))

s3.client()  # boto3 imported and a client built
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak: imports peak higher than what follows (Linux)
base = peak_kb()
# 2 threads: each keeps ~2 MiB of buffers and allocator arena once it has run, so the
# small set already shows the bound and the 4x set adds nothing.
assert ingest.main(["--params", sys.argv[1], "--out", sys.argv[2], "--threads", "2"]) == 0
print("RSS " + json.dumps({"base_kb": base, "peak_kb": peak_kb()}))
"""


def _ingest_growth(endpoint: S3Endpoint, root: Path, n: int) -> int:
    """KiB that ingesting `n` 1.25 MiB cases from S3 adds to a fresh process's peak RSS."""
    rng = np.random.default_rng(n)
    for sub in ("images", "masks"):
        (root / "src" / sub).mkdir(parents=True)
    for i in range(n):
        image = rng.random((512, 512), dtype=np.float32)  # 1 MiB
        np.save(root / "src" / "images" / f"c{i:03d}.npy", image)
        np.save(root / "src" / "masks" / f"c{i:03d}.npy", (image > 0.5).astype(np.uint8))
    uri = endpoint.upload_folder(root / "src", "sources", f"rss/{n}")
    params = _folder_params(root / "params.yaml", uri, spatial_dims=2)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE_INGEST, str(params), str(root / "raw")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rss = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RSS "))[4:])
    return rss["peak_kb"] - rss["base_kb"]


@pytest.mark.slow
@pytest.mark.integration
def test_ingest_memory_does_not_grow_with_the_data_set(
    s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    small = _ingest_growth(s3_endpoint, tmp_path / "small", 6)  # 7.5 MiB
    large = _ingest_growth(s3_endpoint, tmp_path / "large", 24)  # 30 MiB: 4x
    # Streaming holds a few buffers per thread; stacking the set would add > 40 MiB.
    assert large < small + 6 * 1024, (small, large)
