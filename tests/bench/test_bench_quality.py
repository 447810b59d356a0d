"""bench/bench_quality.py in quick mode: both pipelines train on both built-in sets and the
script writes its summary and curve tables. It reports, never asserts, so the test checks
the table, not the timings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.bench.common import run_bench

PIPELINES = ("reference", "unetflow")
SETS = ("synthetic", "mni152")
NUMBER = r"(\d+\.\d+)"


def _section(text: str, title: str) -> str:
    """The text from the heading `title` to the next heading of the same level or above."""
    start = text.index(title)
    rest = text[start + len(title) :]
    nxt = re.search(r"^#{1,3} ", rest, flags=re.MULTILINE)
    return rest[: nxt.start()] if nxt else rest


@pytest.mark.slow
def test_quick_run_writes_both_pipelines_curves_and_the_summary(tmp_path: Path) -> None:
    out, work = tmp_path / "quality.md", str(tmp_path / "work")
    run = run_bench("bench_quality.py", "--quick", "--out", str(out), "--work", work, timeout=800)
    text = out.read_text()
    assert text.strip() in run.stdout  # printed as well as written
    summary = _section(text, "## Summary")
    for name in SETS:
        row = re.search(
            rf"^\| {name} \| {NUMBER} \|.*\| ([+-]\d+\.\d+) \| (not )?met \|$",
            summary,
            flags=re.MULTILINE,
        )
        assert row, f"no summary row for {name}:\n{summary}"
        assert 0.0 <= float(row.group(1)) <= 1.0
        curves = _section(text, f"### {name}:")
        for pipeline in PIPELINES:
            dice = re.findall(rf"^\| {pipeline} \| {NUMBER} \| {NUMBER} \|$", curves, re.MULTILINE)
            assert dice, f"no {pipeline} points for {name}:\n{curves}"
            assert all(0.0 <= float(d) <= 1.0 for _, d in dice)
