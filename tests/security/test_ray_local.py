"""The local Ray that training starts (`ensure_ray`) listens on loopback only, and a
client without the right token is refused (`AuthenticationError`)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {
        **env,
        "PYTHONPATH": str(ROOT),
        "RAY_TMPDIR": str(tmp),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_TOKEN_PATH": str(tmp / "auth_token"),
        **extra,
    }


@pytest.fixture(scope="module")
def local_ray() -> Iterator[tuple[dict, Path]]:
    """The project's own local Ray, started as a user's `unetflow train` starts it."""
    tmp = Path("/tmp") / f"rt-{secrets.token_hex(3)}"  # short: Ray's Unix socket paths
    tmp.mkdir()
    # The token file of a user; the auth mode is unetflow's default (token).
    (tmp / "auth_token").write_text(secrets.token_hex(32))
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "local_ray.py")],
        env=_env(tmp),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line, "local Ray did not start"
        yield json.loads(line), tmp
    finally:
        proc.stdin.close()
        proc.wait(60)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


def test_every_listener_is_on_loopback(local_ray) -> None:
    info, _ = local_ray
    assert len(info["listeners"]) >= 3  # GCS, raylet, dashboard at least
    exposed = [x for x in info["listeners"] if x["ip"] not in LOOPBACK]
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert info["address"].startswith("127.0.0.1:")


def _connect(address: str, tmp: Path, **env: str) -> subprocess.Popen:
    """A client process joining `address`; prints 'connected' if it got in."""
    code = f"import ray; ray.init(address={address!r}); print('connected', flush=True)"
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=_env(tmp, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_client_without_the_token_is_refused(local_ray) -> None:
    info, tmp = local_ray
    # The three clients at once: each spends most of its ~14 s importing Ray and retrying.
    clients = {
        "wrong": _connect(info["address"], tmp, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64),
        "none": _connect(info["address"], tmp, RAY_AUTH_MODE="disabled"),
        # The same client with the user's token (their token file) gets in.
        "right": _connect(info["address"], tmp, RAY_AUTH_MODE="token"),
    }
    try:
        out = {name: (proc, *proc.communicate(timeout=120)) for name, proc in clients.items()}
    finally:
        for proc in clients.values():
            proc.kill()  # a client stuck past its time-out is not left behind
    proc, stdout, stderr = out["wrong"]
    assert proc.returncode != 0 and "connected" not in stdout
    assert "AuthenticationError" in stderr
    proc, stdout, stderr = out["none"]
    assert proc.returncode != 0 and "AuthenticationError" in stderr
    proc, stdout, stderr = out["right"]
    assert proc.returncode == 0 and "connected" in stdout, stderr[-2000:]
