"""A user error inside a flow (a deployment run has no CLI checks before it) fails the
task and flow with its message alone: Prefect's logs hold no traceback for it, and the
stack is kept at DEBUG on `unetflow.flows`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from unet_core.data import DataError
from unetflow.config import parse_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):  # a busy 2-core CI machine
        yield


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))  # a traceback is appended when exc_info is set


@pytest.fixture
def collected() -> Iterator[Collect]:
    handler = Collect()
    loggers = [logging.getLogger(n) for n in ("prefect", "unetflow.flows")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
    logging.getLogger("unetflow.flows").setLevel(logging.DEBUG)
    yield handler
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


def test_bad_folder_fails_the_flow_without_tracebacks(
    tmp_path: Path, raw_folder, prefect_harness, collected: Collect
) -> None:
    from flows.params import TrainParams
    from flows.pipeline import train

    raw = raw_folder(tmp_path, n=6)
    (raw / "images" / "s2.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"s2\.png"):
        train(
            TrainParams(project_dir=str(tmp_path), config=parse_config({"data": {"path": "raw"}}))
        )
    prefect_text = "\n".join(x for x in collected.lines if " prefect." in x)
    assert "Task run failed" in prefect_text and "s2.png" in prefect_text
    assert "Traceback" not in prefect_text, prefect_text
    debug = [x for x in collected.lines if x.startswith("DEBUG unetflow.flows")]
    assert debug and "Traceback" in "\n".join(debug)  # the stack is still there, at DEBUG
    assert not (tmp_path / ".unetflow" / "mlflow.db").exists()
