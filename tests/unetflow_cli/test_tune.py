"""`unetflow tune` refuses bad input with one line and exit code 2, before Ray starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from unetflow_cli.main import main

SPACES = Path(__file__).resolve().parents[2] / "tune" / "spaces"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["tune", *args])
    return code, capsys.readouterr().err.strip()


def test_unknown_search_algorithm_lists_the_valid_ones(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, err = run(
        capsys,
        "--space",
        str(SPACES / "hpo.yaml"),
        "--search-alg",
        "cmaes",
        "--project-dir",
        str(tmp_path),
    )
    assert code == 2
    assert "search_alg" in err and "'optuna'" in err and "'bohb'" in err
    assert len(err.splitlines()) == 1


def test_invalid_space_value_fails_naming_file_key_and_values(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    space = tmp_path / "bad.yaml"
    space.write_text(yaml.safe_dump({"params": {"model.norm": {"choice": ["batch", "layer"]}}}))
    code, err = run(capsys, "--space", str(space), "--project-dir", str(tmp_path))
    assert code == 2
    assert str(space) in err and "params.model.norm" in err and "'layer'" in err
    assert "valid values: ['batch', 'instance', 'group', 'none']" in err


def test_missing_data_and_unknown_resume_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, err = run(
        capsys,
        "--space",
        str(SPACES / "hpo.yaml"),
        "--project-dir",
        str(tmp_path),
        "--data",
        str(tmp_path / "nowhere"),
    )
    assert code == 2 and "nowhere" in err
    code, err = run(capsys, "--resume", "ghost", "--project-dir", str(tmp_path))
    assert code == 2 and "no search named 'ghost'" in err
    code, err = run(capsys, "--project-dir", str(tmp_path))
    assert code == 2 and "--space is required" in err
