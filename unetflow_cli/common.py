"""Arguments shared by several subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from unetflow.config import ConfigError, ExperimentConfig, load_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """--config, --set KEY=VALUE and --project-dir."""
    parser.add_argument("--config", type=Path, help="experiment YAML (default: embedded defaults)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=5",
    )
    add_project_arg(parser)


def add_no_plan_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-plan",
        action="store_true",
        help="do not derive unset settings from the data (same as --set plan=false)",
    )


def add_project_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--project-dir",
        type=Path,
        default=Path("."),
        help="folder holding dvc.yaml and params.yaml (default: .)",
    )


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`["train.epochs=5"]` -> `{"train.epochs": 5}` (values parsed as YAML)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. train.epochs=5")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            # Not YAML (an unclosed bracket or quote, say): the value as written.
            out[key] = value
    return out


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    overrides = parse_overrides(args.set)
    if getattr(args, "no_plan", False):
        overrides["plan"] = False
    return load_config(args.config, overrides)
