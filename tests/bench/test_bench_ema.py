"""bench/bench_ema.py in quick mode: one run, the trained weights and three averages
scored at the same steps, written as a table (it reports, never asserts timings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.common import run_bench


@pytest.mark.slow
def test_quick_run_scores_trained_and_averaged_weights_at_the_same_steps(tmp_path: Path) -> None:
    out = tmp_path / "ema.md"
    run_bench("bench_ema.py", "--quick", "--threads", "1", "--out", str(out))
    text = out.read_text()
    assert "| trained |" in text and "| EMA 0.999 |" in text  # summary rows
    assert "Cost: one `WeightEma.update`" in text
    curve = [line for line in text.splitlines() if line.startswith("| ") and "|" in line[2:]]
    points = [line for line in curve if line.split("|")[2].strip().isdigit()]
    assert len(points) >= 2
    for line in points:
        dice = [float(c) for c in line.strip("|").split("|")[2:]]
        assert len(dice) == 4 and all(0.0 <= d <= 1.0 for d in dice)
