from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows.outcomes import TrainOutcome
from unetflow.training import TrainReport
from unetflow_cli.main import build_parser, main

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


def _result(
    data_version: str = "abc.dir",
    reused: bool = False,
    became_champion: bool = False,
    champion_version: str | None = None,
) -> TrainOutcome:
    report = TrainReport(
        run_id="r1",
        experiment_id="0",
        model_uri="models:/m/1",
        registered_name="unet-seg",
        version="1",
        became_champion=became_champion,
        test_metrics={"test_dice": 0.9, "test_iou": 0.8},
        best_val={},
        ray_run_name="n",
        storage_path="/s",
    )
    return TrainOutcome(report, data_version, reused, champion_version)


@pytest.mark.parametrize(("champion", "labelled"), [("1", True), ("2", False), (None, False)])
def test_summary_labels_the_version_champion_only_when_the_registry_says_so(
    tmp_path: Path, capsys, champion: str | None, labelled: bool
) -> None:
    from unetflow_cli.run import _print_result

    # A reused run: its cached report says it became champion; the alias has moved since.
    result = _result(reused=True, became_champion=True, champion_version=champion)
    _print_result(result, tmp_path, None, "prod")
    out = capsys.readouterr().out.splitlines()
    line = next(x for x in out if x.startswith("model version"))
    assert line.endswith("models:/unet-seg/1" + ("  (@prod)" if labelled else ""))
    assert "models:/unet-seg@prod" in out[-1]


def test_summary_names_where_the_data_version_comes_from(tmp_path: Path, capsys) -> None:
    from unetflow_cli.run import _print_result

    _print_result(_result(data_version="folder-0123abcd"), tmp_path, None, "champion")
    _print_result(_result(data_version="abc.dir"), tmp_path, None, "champion")
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("data version")]
    assert lines[0].endswith("(content hash of the data.path folder)")
    assert lines[1].endswith(f"(DVC, {tmp_path / 'dvc.lock'})")


@pytest.mark.parametrize(("server", "shown"), [(None, True), ("http://127.0.0.1:5000", False)])
def test_ui_hint_follows_the_tracking_uri_the_user_set_before_the_flow(
    tmp_path: Path, capsys, monkeypatch, server: str | None, shown: bool
) -> None:
    from types import SimpleNamespace

    from unetflow_cli import run

    if server is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server)

    def train_flow(**parameters: object) -> TrainOutcome:
        # Training in-process calls mlflow.set_tracking_uri, which exports the variable.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
        return _result(champion_version="1")

    # A flow takes its parameter model's top-level parameters (`flows.params.takes`).
    fake_params = SimpleNamespace(TrainParams=lambda **kw: SimpleNamespace(parameters=lambda: kw))
    fake_flows = SimpleNamespace(train=train_flow)
    monkeypatch.setattr(run, "_flows", lambda: (fake_params, fake_flows))
    for name in ("dvc.yaml", "params.yaml"):  # checked before the flow starts
        shutil.copy(Path(__file__).parents[2] / name, tmp_path / name)
    args = build_parser().parse_args(["train", "--project-dir", str(tmp_path)])
    assert args.func(args) == 0
    assert ("look at it:     .venv/bin/mlflow ui" in capsys.readouterr().out) == shown
