"""`unetflow`: the command line. Every command validates its input first and fails with
one line that names the file, field or value to fix, and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from unetflow.dvc_data import DvcError
from unetflow.user_errors import USER_ERRORS

# Each module adds its subcommands with `register(subparsers)`.
COMMAND_MODULES = (
    "unetflow_cli.run",
    "unetflow_cli.predict",
    "unetflow_cli.deploy",
    "unetflow_cli.registry",
    "unetflow_cli.data",
    "unetflow_cli.tune",
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


def main(argv: list[str] | None = None) -> int:
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
