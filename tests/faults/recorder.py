"""Each fault test records its outcome for `bench/reliability.py`, the one report writer.

A test takes the `fault_record` fixture, names its fault, and fills in what it measured;
the fixture appends one JSON line to the file named by `UNETFLOW_RELIABILITY_OUT` (and
writes nothing when that variable is unset, as in CI). A test that fails before calling
`survived()` is recorded as not survived, with whatever it measured up to then.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

OUT_ENV = "UNETFLOW_RELIABILITY_OUT"


@dataclass
class FaultRecord:
    """One injected fault and what it cost."""

    test: str  # pytest node id
    fault: str = ""  # what was injected, as the report shows it
    survived: bool = False  # set by `survived()` after the test's last assert
    intervals_lost: float | None = None  # work repeated, in checkpoint intervals
    recover_s: float | None = None  # seconds from the fault to training going on
    dice: float | None = None  # final val_dice of the faulted run
    baseline_dice: float | None = None  # the same seed, uninterrupted
    note: str = ""

    def mark_survived(self) -> None:
        self.survived = True


@pytest.fixture
def fault_record(request: pytest.FixtureRequest) -> Iterator[FaultRecord]:
    record = FaultRecord(test=request.node.nodeid)
    yield record
    out = os.environ.get(OUT_ENV)
    if out and record.fault:
        with Path(out).open("a") as sink:
            sink.write(json.dumps(asdict(record)) + "\n")
