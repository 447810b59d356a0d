"""The env file `unetflow stack up` writes, and how the CLI reads it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unetflow.stack.state import env_file, read_env_file, write_env_file
from unetflow_cli import main


def _write(project: Path, values: dict[str, str]) -> Path:
    path = env_file(project)
    write_env_file(path, values)
    return path


def test_env_file_round_trips_and_is_private(tmp_path: Path) -> None:
    values = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "RAY_AUTH_TOKEN": "a=b"}
    path = _write(tmp_path, values)
    assert read_env_file(path) == values
    assert path.stat().st_mode & 0o777 == 0o600


def test_cli_loads_the_env_file_of_its_project_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5999", "UNETFLOW_X": "1"})
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("UNETFLOW_X", raising=False)
    main._load_stack_env(["train", "--set", "train.epochs=1", "--project-dir", str(tmp_path)])
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5999"
    assert os.environ["UNETFLOW_X"] == "1"


def test_variables_already_set_win_over_the_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5999"})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    main._load_stack_env(["train", "--project-dir", str(tmp_path)])
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mlflow.example:5000"


def test_the_stack_command_does_not_load_its_own_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, {"UNETFLOW_X": "1"})
    monkeypatch.delenv("UNETFLOW_X", raising=False)
    main._load_stack_env(["stack", "status", "--project-dir", str(tmp_path)])
    assert "UNETFLOW_X" not in os.environ


def test_bad_stack_option_fails_in_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main.main(["stack", "up", "--ray-cpus", "0", "--project-dir", "."]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --ray-cpus 0:") and "\n" not in err
