"""`unetflow plan DATA`: a commented YAML config, or one line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import yaml

from unetflow_cli.main import main


def test_plan_prints_a_commented_config_that_validate_accepts(
    prepared_dir: Path, tmp_path: Path, capsys
) -> None:
    assert main(["plan", str(prepared_dir), "--set", "train.epochs=3"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# unetflow plan") and "train cases" in text
    config = yaml.safe_load(text)
    assert config["train"]["epochs"] == 3 and config["data"]["path"] == str(prepared_dir)
    assert config["model"]["spatial_dims"] == 2
    assert "  # " in next(line for line in text.splitlines() if "batch_size:" in line)
    out = tmp_path / "plan.yaml"
    assert main(["plan", str(prepared_dir), "-o", str(out)]) == 0
    assert main(["validate", "--config", str(out)]) == 0


def test_plan_on_a_missing_folder_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["plan", str(tmp_path / "nothing")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "nothing" in captured.err
    assert "Traceback" not in captured.err
