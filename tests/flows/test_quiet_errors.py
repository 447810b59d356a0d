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


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))  # a traceback is appended when exc_info is set


@pytest.fixture
def debug_log() -> Iterator[Collect]:
    # Not a Prefect logger: Prefect's logging set-up at the flow run leaves it alone.
    handler, logger = Collect(), logging.getLogger("unetflow.flows")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def _stored_logs() -> str:
    """What Prefect stored for its runs (what the UI shows), tracebacks included."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogHandler

    for name in ("prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, APILogHandler):
                handler.flush()  # logs are shipped in the background, in batches

    async def read() -> list:
        async with get_client() as client:
            return await client.read_logs()

    return "\n".join(log.message for log in asyncio.run(read()))


def test_bad_folder_fails_the_flow_without_tracebacks(
    tmp_path: Path, raw_folder, prefect_harness, debug_log: Collect
) -> None:
    from flows.params import TrainParams
    from flows.pipeline import train

    raw = raw_folder(tmp_path, n=6)
    (raw / "images" / "s2.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"s2\.png"):
        config = parse_config({"data": {"path": "raw"}})
        train(**TrainParams(project_dir=str(tmp_path), config=config).parameters())
    stored = _stored_logs()
    assert "Finished in state Failed" in stored and "s2.png" in stored, stored
    assert "Traceback" not in stored, stored
    assert "Traceback" in "\n".join(debug_log.lines)  # the stack is still there, at DEBUG
    assert not (tmp_path / ".unetflow" / "mlflow.db").exists()
