"""A small real filesystem (tmpfs) that a test can fill up or remount read-only.

Root ignores folder permissions, so `chmod` cannot make a folder read-only for a test
running as root (as CI does); a read-only mount can. Mounting needs root: elsewhere the
tests that use it are skipped with that reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


class Disk:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._filler = root / ".filler"

    def fill(self) -> None:
        """Write until the filesystem is full (ENOSPC), down to its last byte."""
        with self._filler.open("ab", buffering=0) as out:  # unbuffered: no late flush
            for size in (1 << 16, 1 << 10, 1):
                with contextlib.suppress(OSError):
                    while True:
                        out.write(b"\0" * size)

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)

    def read_only(self) -> None:
        _mount("-o", "remount,ro", str(self.root))

    def writable(self) -> None:
        _mount("-o", "remount,rw", str(self.root))


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


@contextmanager
def small_disk(size: str = "16m") -> Iterator[Disk]:
    """A fresh tmpfs of `size`, unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full or read-only filesystem needs root to mount a tmpfs")
    root = Path(tempfile.mkdtemp(prefix="unetflow-disk-"))
    try:
        _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(root))
    except subprocess.CalledProcessError as err:
        root.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {err.stderr.strip()}")
    try:
        yield Disk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
        root.rmdir()
