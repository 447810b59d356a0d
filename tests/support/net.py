"""Ports and readiness checks on loopback: the stack's own helpers, plus `stop`."""

from __future__ import annotations

import subprocess

from unetflow.stack.net import free_port, http_ok, port_open, wait_until

__all__ = ["free_port", "http_ok", "port_open", "stop", "wait_until"]


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
