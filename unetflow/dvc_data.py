"""DVC glue: make sure the project is a DVC repo, reproduce the data stages, read the
data version, push to the remote. DVC runs as a subprocess of this interpreter, so the
stage commands find this environment's Python and packages.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

PREPARED = "data/prepared"
LOCAL_REMOTE = ".unetflow/dvc-remote"


class DvcError(RuntimeError):
    """A DVC command failed; the message holds its last output lines."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Stage commands say `python`: make it this interpreter, whatever PATH says.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DVC_NO_ANALYTICS", "1")
    return env


def dvc(project_dir: Path, *args: str, quiet: bool = False) -> str:
    """Run `dvc ARGS` in `project_dir`; raise DvcError with its output when it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=project_dir, env=_env(), capture_output=True, text=True,
    )  # fmt: skip
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-15:])
        raise DvcError(
            f"`dvc {' '.join(args)}` failed in {project_dir} (exit {proc.returncode}):\n{tail}"
        )
    if output and not quiet:
        print(output)
    return output


def _inside_git(project_dir: Path) -> bool:
    proc = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=project_dir, capture_output=True, text=True
    )
    return proc.returncode == 0 and Path(proc.stdout.strip()).resolve() == project_dir.resolve()


def ensure_repo(project_dir: Path) -> None:
    """Initialise DVC and a default remote where missing (idempotent).

    The remote is `UNETFLOW_DVC_REMOTE` (e.g. s3://bucket/prefix, endpoint from
    `AWS_ENDPOINT_URL`) or a local folder. It goes to `.dvc/config.local`, which git
    ignores, so no machine-specific path or endpoint lands in tracked files.
    """
    if not (project_dir / ".dvc").is_dir():
        dvc(project_dir, "init", *([] if _inside_git(project_dir) else ["--no-scm"]), quiet=True)
    if dvc(project_dir, "remote", "list", quiet=True).strip():
        return
    url = os.environ.get("UNETFLOW_DVC_REMOTE") or str((project_dir / LOCAL_REMOTE).resolve())
    dvc(project_dir, "remote", "add", "--local", "--default", "storage", url, quiet=True)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if url.startswith("s3://") and endpoint:
        dvc(
            project_dir,
            "remote",
            "modify",
            "--local",
            "storage",
            "endpointurl",
            endpoint,
            quiet=True,
        )


def reproduce(project_dir: Path, stage: str = "prepare") -> bool:
    """Run `dvc repro STAGE`; returns True when it did work, False when up to date."""
    output = dvc(project_dir, "repro", stage, quiet=True)
    changed = "Running stage" in output
    print(output if changed else f"data stage '{stage}' is up to date: nothing to do")
    return changed


def data_version(project_dir: Path, out: str = PREPARED) -> str:
    """The DVC md5 of `out` as recorded in dvc.lock (the data version id)."""
    lock = project_dir / "dvc.lock"
    if not lock.is_file():
        raise DvcError(f"{lock} is missing; run `dvc repro` (or `unetflow run`) first")
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    for stage in stages.values():
        for entry in stage.get("outs", []):
            if entry.get("path") == out:
                return str(entry["md5"])
    raise DvcError(f"{lock} records no output {out!r}; check the stages of dvc.yaml")


def push(project_dir: Path) -> None:
    """Upload the prepared data to the default remote."""
    dvc(project_dir, "push", quiet=True)
