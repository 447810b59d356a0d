"""Ports and readiness checks on loopback."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts TCP connections on `host:port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str) -> bool:
    """Whether GET `url` answers 200 (any connection error counts as no)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until(
    ready: Callable[[], bool],
    what: str,
    timeout: float = 60.0,
    proc: subprocess.Popen | None = None,
    log: str | Path | None = None,
) -> None:
    """Poll `ready` until true; fail early if `proc` exits, with its log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}{log_tail(log)}")
        time.sleep(0.25)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s{log_tail(log)}")


def log_tail(log: str | Path | None, lines: int = 20) -> str:
    """The last `lines` lines of a log file, prefixed for an error message ('' if none)."""
    if not log:
        return ""
    try:
        with open(log, errors="replace") as f:
            return f" (log {log}):\n" + "".join(f.readlines()[-lines:])
    except OSError:
        return ""
