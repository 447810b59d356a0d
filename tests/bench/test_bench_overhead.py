"""The overhead benchmark's quick mode runs end to end and writes its table (timings
are reported, never asserted: this machine's load decides them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_mode_writes_the_overhead_table(tmp_path: Path) -> None:
    out = tmp_path / "overhead.md"
    proc = subprocess.run(
        [sys.executable, "bench/bench_overhead.py", "--quick", "--threads", "1", "--out", str(out)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    assert "| quick: 12 tiles 64x64, 100 steps/epoch | bare |" in table
    ray_row = next(line for line in table.splitlines() if "| Ray + MLflow |" in line)
    cells = [c.strip() for c in ray_row.split("|")[3:9]]
    assert all(float(c) >= 0 for c in cells), ray_row  # every part was measured
    assert "Reporting training result" not in proc.stdout + proc.stderr
