"""Prefect flows: thin wrappers that parse parameters and call `unetflow` and `tune`."""

DEFAULT_POOL = "unetflow-process"  # the process work pool `unetflow deploy` creates and uses
