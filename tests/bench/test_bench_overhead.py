"""The overhead benchmark's quick mode runs end to end and writes its table (timings
are reported, never asserted: this machine's load decides them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.common import run_bench


@pytest.mark.slow
def test_quick_mode_writes_the_overhead_table(tmp_path: Path) -> None:
    out = tmp_path / "overhead.md"
    proc = run_bench("bench_overhead.py", "--quick", "--threads", "1", "--out", str(out))
    table = out.read_text()
    assert "| quick: 12 tiles 64x64, 100 steps/epoch | bare |" in table
    ray_row = next(line for line in table.splitlines() if "| Ray + MLflow |" in line)
    cells = [c.strip() for c in ray_row.split("|")[3:9]]
    assert all(float(c) >= 0 for c in cells), ray_row  # every part was measured
    # Cores by process: the bare loop trains in the driver, the Ray run in its worker.
    cores = table.split("Cores kept busy", 1)[1]
    bare_cpu = next(line for line in cores.splitlines() if line.startswith("| quick | bare |"))
    ray_cpu = next(line for line in cores.splitlines() if "| Ray + MLflow |" in line)
    assert float(bare_cpu.split("|")[3]) > 0.3, bare_cpu  # driver
    assert float(ray_cpu.split("|")[4]) > 0.3, ray_cpu  # Ray worker
    assert "Reporting training result" not in proc.stdout + proc.stderr
