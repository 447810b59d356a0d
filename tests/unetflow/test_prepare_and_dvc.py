from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml

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


def test_ingest_refuses_a_corrupt_raw_area(project_dir: Path, tmp_path: Path, capsys) -> None:
    params = project_dir / "params.yaml"
    assert ingest_main(["--params", str(params), "--out", str(tmp_path / "raw")]) == 0
    with (tmp_path / "raw" / "masks.npy").open("r+b") as f:
        f.seek(-1, 2)
        f.write(b"\x07")
    args = ["--params", str(params), "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "p")]
    assert prepare_main(args) == 2
    assert "masks.npy" in capsys.readouterr().err and not (tmp_path / "p").exists()


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
