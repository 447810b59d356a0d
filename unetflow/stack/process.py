"""Detached service processes: started in their own session, known by pid and start time.

A pid alone can be reused by an unrelated process after ours exited; the pair (pid,
start time) cannot, so `down` never signals anything `up` did not start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class ProcessRecord:
    """What the state file keeps of a started process."""

    pid: int
    started: float  # psutil create_time: tells our process from a later one with its pid

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return proc.create_time() == self.started and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def spawn(cmd: list[str], env: dict[str, str], log: Path, cwd: Path) -> ProcessRecord:
    """Start `cmd` detached: its own session (it outlives the CLI, and stopping its
    process group stops its children too), output to `log` (a fresh one per start)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ProcessRecord(proc.pid, psutil.Process(proc.pid).create_time())


def exited(record: ProcessRecord) -> bool:
    """True once the process is gone; reaps it when this process is its parent."""
    with suppress(ChildProcessError, OSError):
        os.waitpid(record.pid, os.WNOHANG)
    return not record.alive()


def stop_group(
    record: ProcessRecord,
    strays: Callable[[], list[int]] = list,
    grace: float = 15.0,
) -> None:
    """SIGTERM the process group `record` leads, then SIGKILL what is left.

    `strays` lists further processes of the service that left its process group (Ray's
    workers do), so they are signalled too.

    The group is signalled only while `record` still names our process.
    """
    leader = record.alive()  # else its pid (and group id) may belong to someone else now
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if leader:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pid, sig)
        for pid in strays():
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if (not leader or (exited(record) and not _group_alive(record.pid))) and not strays():
                return
            time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    """A process of the group still runs. Zombies do not count: `killpg(pgid, 0)` says
    yes while any is left, and where PID 1 reaps orphans late (containers) every stop
    waited out its whole grace period for processes that had already exited."""
    try:
        os.killpg(pgid, 0)  # no member at all: the common case, answered without a scan
    except (ProcessLookupError, PermissionError):
        return False
    for proc in psutil.process_iter(["status"]):
        with suppress(psutil.Error, OSError):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                return True
    return False
