"""Where a stack keeps its data, and what it remembers between `up`, `status` and `down`.

Everything lives under `<project>/.unetflow/stack/`:

    state.json   ports, process records and generated credentials (mode 0600)
    env          the variables clients need (mode 0600; holds the Ray token and S3 keys)
    logs/        one log per service
    postgres/    the database cluster; prefect/ the Prefect home; s3/ MinIO's data
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from unetflow.stack.process import ProcessRecord

STACK_DIR = Path(".unetflow") / "stack"
STATE_FILE = "state.json"
ENV_FILE = "env"


def stack_root(project_dir: Path) -> Path:
    return project_dir.resolve() / STACK_DIR


def env_file(project_dir: Path) -> Path:
    """The env file `unetflow stack up` writes and the CLI reads."""
    return stack_root(project_dir) / ENV_FILE


@dataclass
class StackState:
    """Ports, credentials and processes of one project's stack."""

    ports: dict[str, int] = field(default_factory=dict)  # service -> its main port
    processes: dict[str, ProcessRecord] = field(default_factory=dict)  # service -> process
    extra: dict[str, list[str]] = field(default_factory=dict)  # e.g. Ray's listener args
    # Generated once per project; never printed. moto accepts any key, MinIO takes these.
    s3_access_key: str = field(default_factory=lambda: "unetflow-" + secrets.token_hex(4))
    s3_secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    pg_password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    ray_token: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)

    @classmethod
    def load(cls, root: Path) -> StackState:
        path = root / STATE_FILE
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_text())
        raw["processes"] = {k: ProcessRecord(**v) for k, v in raw.get("processes", {}).items()}
        return cls(**raw)

    def save(self, root: Path) -> None:
        write_private(root / STATE_FILE, json.dumps(asdict(self), indent=2) + "\n")


def write_private(path: Path, text: str) -> None:
    """Write `text` readable by the owner only, replacing the file in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """`KEY=VALUE` lines: readable by `load_env_file`, by `set -a; . FILE` and by dotenv."""
    lines = ["# Written by `unetflow stack up`; removed by `unetflow stack down`."]
    lines += [f"{key}={value}" for key, value in sorted(values.items())]
    write_private(path, "\n".join(lines) + "\n")


def read_env_file(path: Path) -> dict[str, str]:
    """The `KEY=VALUE` pairs of an env file (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            values[key] = value
    return values


def load_env_file(path: Path, environ: dict[str, str] | os._Environ = os.environ) -> list[str]:
    """Set each variable of the env file that `environ` does not already have.

    Returns:
        The names that were set; variables already in the environment win.
    """
    if not path.is_file():
        return []
    values = read_env_file(path)
    added = [key for key in values if key not in environ]
    for key in added:
        environ[key] = values[key]
    return added
