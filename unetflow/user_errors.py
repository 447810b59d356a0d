"""The exception types that mean bad input, not a bug: reported as one line, no traceback.

Kept apart from `errors.py` because it gathers types from modules that import that one.
"""

from __future__ import annotations

from unet_core.data import DataError
from unet_core.engine import CheckpointWriteError
from unetflow.config import ConfigError
from unetflow.errors import UsageError

# Input that will not heal by retrying: the message says what to change.
USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    DataError,
    UsageError,
    CheckpointWriteError,
)
