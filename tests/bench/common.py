"""Running a benchmark script as a user does, for the bench tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python bench/SCRIPT ARGS` from the repository root (this checkout's code first on the
    path); asserts it exited 0, with the end of its stderr when it did not."""
    run = subprocess.run(
        [sys.executable, f"bench/{script}", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run
