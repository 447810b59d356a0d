from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from unetflow.cli import build_parser, main

BIN = Path(sys.executable).parent


def test_every_command_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"run", "train", "validate", "deploy", "serve"} <= set(sub.choices)
    for name, command in sub.choices.items():
        assert command.format_help(), name


def test_deploy_without_server_fails_in_one_line(monkeypatch, capsys) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["deploy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "PREFECT_API_URL" in err[0]


@pytest.mark.slow
def test_console_script_is_installed_and_reports_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "exp.yaml"
    bad.write_text("model: {preset: unet, depth: 9}\n")
    proc = subprocess.run(
        [str(BIN / "unetflow"), "validate", "--config", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "depth" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("champion", "labelled"), [("1", True), ("2", False), (None, False)])
def test_summary_labels_the_version_champion_only_when_the_registry_says_so(
    tmp_path: Path, capsys, champion: str | None, labelled: bool
) -> None:
    from unetflow.commands.run import _print_result

    # A reused run: its cached report says it became champion; the alias has moved since.
    result = {"data_version": "abc.dir", "test_metrics": {"test_dice": 0.9, "test_iou": 0.8},
              "run_id": "r1", "reused": True, "became_champion": True, "champion_version": champion,
              "registered_name": "unet-seg", "version": "1", "storage_path": "/s",
              "ray_run_name": "n"}  # fmt: skip
    _print_result(result, tmp_path, None)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("model version"))
    assert line.endswith("models:/unet-seg/1" + ("  (@champion)" if labelled else ""))


@pytest.mark.parametrize(("server", "shown"), [(None, True), ("http://127.0.0.1:5000", False)])
def test_summary_points_at_the_embedded_store_unless_a_server_was_configured(
    tmp_path: Path, capsys, monkeypatch, server: str | None, shown: bool
) -> None:
    from unetflow.commands.run import _print_result

    # Training in-process sets MLFLOW_TRACKING_URI (mlflow.set_tracking_uri exports it):
    # what counts is what the user had configured before the flow ran.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    result = {"data_version": "v", "test_metrics": {"test_dice": 0.9, "test_iou": 0.8},
              "run_id": "r", "champion_version": "1", "registered_name": "m", "version": "1",
              "storage_path": "/s", "ray_run_name": "n"}  # fmt: skip
    _print_result(result, tmp_path, server)
    assert ("look at it:     .venv/bin/mlflow ui" in capsys.readouterr().out) == shown
