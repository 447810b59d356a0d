"""Bad input fails a flow with its one-line message; the stack goes to DEBUG.

Prefect logs every failed task and flow with its traceback (30+ lines each, one per
failed task and flow). For `USER_ERRORS` the traceback only hides the line that says
what to fix, so `UserErrorFilter` strips it from Prefect's run loggers (console and
API alike) and logs it at DEBUG on `unetflow.flows` instead.
"""

from __future__ import annotations

import logging

from unetflow.user_errors import USER_ERRORS

RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")
debug_log = logging.getLogger("unetflow.flows")


class UserErrorFilter(logging.Filter):
    """Drops the traceback of a record whose exception is a user error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, USER_ERRORS):
            debug_log.debug("%s", record.getMessage(), exc_info=record.exc_info)
            record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    """Add the filter to Prefect's run loggers (idempotent)."""
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, UserErrorFilter) for f in logger.filters):
            logger.addFilter(UserErrorFilter())
