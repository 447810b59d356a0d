"""A one-command local stack on 127.0.0.1: PostgreSQL, S3, MLflow, Prefect (server and
worker) and a two-node Ray cluster with token auth; data under `.unetflow/stack/`.

Example:
    >>> stack = Stack(Path("."))
    >>> stack.up()            # starts what is not running, waits until healthy
    >>> stack.status()        # health and URL of each service
    >>> stack.down()          # stops only what `up` started
"""

from unetflow.stack.base import Service, StackError, StackOptions
from unetflow.stack.lifecycle import ServiceStatus, Stack
from unetflow.stack.state import env_file, load_env_file

__all__ = [
    "Service",
    "ServiceStatus",
    "Stack",
    "StackError",
    "StackOptions",
    "env_file",
    "load_env_file",
]
