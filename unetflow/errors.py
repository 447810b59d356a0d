"""Errors the CLI reports as one line and exit code 2 (bad input, not a bug)."""


class UsageError(RuntimeError):
    """The user asked for something that cannot be done as asked; the message says why
    and what to do instead."""
