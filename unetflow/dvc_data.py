"""DVC glue: make sure the project is a DVC repo, reproduce the data stages (ingest ->
prepare -> stats), read the data version, push to and pull from the remote, and check out
an exact data version (`ensure_version`). DVC runs as a subprocess of this interpreter, so the
stage commands find this environment's Python and packages.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from unetflow.errors import UsageError
from unetflow.uris import check_location

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
        cwd=project_dir,
        env=_env(),
        capture_output=True,
        text=True,
    )
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


def ensure_params(project_dir: Path) -> None:
    """Add the `stats` section to a params.yaml that predates it (DVC refuses missing params).

    The section is appended as text, so the file's comments stay as they are.
    """
    from unetflow.stats import DEFAULT_SECTION

    path = project_dir / "params.yaml"
    if not path.is_file():
        raise DvcError(f"{path} is missing; copy params.yaml from the unetflow repository")
    if "stats" not in (yaml.safe_load(path.read_text()) or {}):
        with path.open("a") as f:
            f.write(DEFAULT_SECTION)
        print(f"{path}: added the default `stats` section (used by the stats stage)")


def reproduce_stages(
    project_dir: Path, stage: str | None = None, force_ingest: bool = False
) -> list[str]:
    """Run `dvc repro [STAGE]`; returns the names of the stages that ran (empty: none).

    Args:
        stage: a stage of dvc.yaml and the stages it needs; None: every stage.
        force_ingest: re-read the source even if params are unchanged (a folder or S3
            prefix whose files changed: DVC cannot see that through params alone).
    """
    ensure_params(project_dir)
    if force_ingest:
        dvc(project_dir, "repro", "--force", "--single-item", "ingest", quiet=True)
    output = dvc(project_dir, "repro", *([stage] if stage else []), quiet=True)
    ran = re.findall(r"Running stage '([^']+)'", output)
    what = f"data stage '{stage}'" if stage else "data pipeline"
    if ran:
        print(output)
    else:
        print(f"{what} is up to date: nothing to do")
    return (["ingest"] if force_ingest else []) + ran


def reproduce(project_dir: Path, stage: str | None = "prepare") -> bool:
    """Run `dvc repro STAGE`; returns True when it did work, False when up to date."""
    return bool(reproduce_stages(project_dir, stage))


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


# DVC failures worth retrying: the remote was unreachable or overloaded for a moment.
_TRANSIENT = re.compile(
    r"connect|timed? ?out|reset by peer|refused|unreachable|temporar|throttl|slow ?down|"
    r"service unavailable|\b50[0-4]\b",
    re.IGNORECASE,
)


def dvc_with_retries(project_dir: Path, *args: str, deadline_s: float = 120.0) -> str:
    """`dvc ARGS`, retried with backoff while it fails for transient (network) reasons.

    Push and pull are idempotent (DVC transfers only what is missing, and an S3 object
    appears only once fully uploaded), so running them again after an outage is safe.
    """
    deadline = time.monotonic() + deadline_s
    delay = 1.0
    while True:
        try:
            return dvc(project_dir, *args, quiet=True)
        except DvcError as err:
            if not _TRANSIENT.search(str(err)) or time.monotonic() + delay > deadline:
                raise
            first = str(err).splitlines()[-1][:200]
            print(f"`dvc {' '.join(args)}` failed ({first}); retry in {delay:.0f}s", flush=True)
            time.sleep(delay)
            delay = min(delay * 2, 15.0)


def push(project_dir: Path, remote: str | None = None, deadline_s: float = 120.0) -> str:
    """Upload the pipeline's outputs (raw and prepared data) to the (default) remote."""
    out = dvc_with_retries(project_dir, "push", *_remote_args(remote), deadline_s=deadline_s)
    print(out or "pushed: nothing to do")
    return out


def pull(project_dir: Path, remote: str | None = None, deadline_s: float = 120.0) -> str:
    """Download the outputs recorded in dvc.lock from the remote into the workspace."""
    out = dvc_with_retries(project_dir, "pull", *_remote_args(remote), deadline_s=deadline_s)
    print(out or "pulled: nothing to do")
    return out


def status(project_dir: Path, cloud: bool = False, remote: str | None = None) -> str:
    """`dvc status` (workspace vs dvc.lock), or with `cloud` the cache vs the remote."""
    args = ["status", *(["--cloud", *_remote_args(remote)] if cloud else [])]
    return dvc(project_dir, *args, quiet=True)


def _remote_args(remote: str | None) -> list[str]:
    return ["--remote", remote] if remote else []


def set_remote(
    project_dir: Path, url: str, endpoint: str | None = None, name: str = "storage"
) -> None:
    """Make `url` (s3://bucket/prefix or a folder) the default remote, in config.local only.

    Credentials are never written: DVC reads them from the environment or AWS profiles.

    Raises:
        UsageError: `url` or `endpoint` is malformed (checked before any DVC state is written).
    """
    try:
        check_location(url)
    except ValueError as err:
        raise UsageError(f"remote URL {err}") from None
    if endpoint is not None and not re.match(r"^https?://[^/\s]+", endpoint):
        raise UsageError(
            f"--endpoint {endpoint!r} is not an http(s) URL; use e.g. http://127.0.0.1:9000"
        )
    ensure_repo(project_dir)
    names = dvc(project_dir, "remote", "list", "--local", quiet=True).split()
    verb = "modify" if name in names else "add"
    if verb == "add":
        dvc(project_dir, "remote", "add", "--local", "--default", name, url, quiet=True)
    else:
        dvc(project_dir, "remote", "modify", "--local", name, "url", url, quiet=True)
        dvc(project_dir, "remote", "default", "--local", name, quiet=True)
    if endpoint:
        dvc(project_dir, "remote", "modify", "--local", name, "endpointurl", endpoint, quiet=True)


VERSIONS = ".unetflow/data"  # checked-out data versions, one folder per md5 (git-ignored)
_MD5 = re.compile(r"^[0-9a-f]{32}(\.dir)?$")


class UnknownVersionError(DvcError):
    """The requested data version is neither in the DVC cache nor on the remote."""


def parse_version(version: str) -> str:
    """`"<md5>.dir"` or `"<md5>"` -> `"<md5>"`; anything else is a `UsageError`."""
    if not _MD5.match(version):
        raise UsageError(
            f"data version {version!r} is not a DVC md5 (32 hex digits, optionally "
            "followed by .dir); take it from dvc.lock or the MLflow run's data_version tag"
        )
    return version.removesuffix(".dir")


def ensure_version(project_dir: Path, version: str) -> Path:
    """The folder holding data version `version`, checked out or pulled if needed.

    A version is the DVC md5 of a prepared data folder (`data_version`, with or without
    `.dir`). It is materialised once into `.unetflow/data/<md5>/`: from the DVC cache when
    there, else from the remote; a temporary .dvc file points DVC at that md5 (DVC can
    fetch any recorded directory hash this way, whatever dvc.lock says now). The checkout
    goes to a temporary folder renamed into place, so the folder is complete or absent.

    Raises:
        UsageError: `version` is not an md5.
        UnknownVersionError: neither the cache nor the remote holds it.
    """
    md5 = parse_version(version)
    final = project_dir / VERSIONS / md5
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".partial-{md5}-{os.getpid()}")
    # The .dvc file may not sit in a git-ignored folder (DVC refuses it): use the root.
    dvcfile = project_dir / f".unetflow-version-{md5}-{os.getpid()}.dvc"
    rel = partial.relative_to(project_dir).as_posix()
    dvcfile.write_text(f"outs:\n- md5: {md5}.dir\n  path: {rel}\n  hash: md5\n")
    try:
        dvc_with_retries(project_dir, "pull", dvcfile.name)
        partial.rename(final)
    except DvcError as err:
        if "missing" in str(err).lower() or "do not exist" in str(err).lower():
            current = _current_version(project_dir)
            raise UnknownVersionError(
                f"data version {md5} is in neither the DVC cache nor the remote of "
                f"{project_dir} (current version in dvc.lock: {current}); push it from the "
                "machine that prepared it (`unetflow data push`) or pick a known version"
            ) from None
        raise
    finally:
        dvcfile.unlink(missing_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
    print(f"data version {md5} checked out into {final}")
    return final


def _current_version(project_dir: Path) -> str:
    try:
        return data_version(project_dir).removesuffix(".dir")
    except DvcError:
        return "none"
