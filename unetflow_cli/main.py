"""`unetflow`: the command line. Every command validates its input first and fails with
one line that names the file, field or value to fix, and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import NoReturn

from unetflow.dvc_data import DvcError
from unetflow.user_errors import USER_ERRORS

# Each module adds its subcommands with `register(subparsers)`.
COMMAND_MODULES = (
    "unetflow_cli.run",
    "unetflow_cli.plan",
    "unetflow_cli.predict",
    "unetflow_cli.deploy",
    "unetflow_cli.registry",
    "unetflow_cli.data",
    "unetflow_cli.tune",
    "unetflow_cli.stack",
)

# Reported as one line and exit code 2: bad input, and DVC's own failures (its message
# already holds the last lines DVC printed).
REPORTED = (*USER_ERRORS, DvcError, FileNotFoundError)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (with where to find help), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="unetflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _load_stack_env(argv: list[str]) -> None:
    """Before anything reads the environment (Ray reads it at import): take the client
    settings of a running `unetflow stack` from `<--project-dir>/.unetflow/stack/env`.
    Variables already set win; the `stack` command itself sets up its own."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("command", nargs="?")
    pre.add_argument("--project-dir", type=Path, default=Path("."))
    known, _ = pre.parse_known_args(argv)
    if known.command != "stack":
        from unetflow_cli.stack import load_stack_env

        load_stack_env(known.project_dir)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _load_stack_env(argv)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except REPORTED as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
