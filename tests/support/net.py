"""Ports and readiness checks on loopback."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
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
    log: str | None = None,
) -> None:
    """Poll `ready` until true; fail early if `proc` exits, with its log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}{_tail(log)}")
        time.sleep(0.25)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s{_tail(log)}")


def _tail(log: str | None) -> str:
    if not log:
        return ""
    try:
        with open(log, errors="replace") as f:
            return ":\n" + "".join(f.readlines()[-20:])
    except OSError:
        return ""


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
