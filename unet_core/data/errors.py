"""`DataError`: bad input, reported in one line that names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A data set file or folder cannot be used; the message says which and why.

    Raised instead of letting a reader or torch fail deep inside a stack, so a user sees
    e.g. ``masks/cell_03.png: mask values are not integer labels (found 0.37)``.
    """

    def __init__(self, where: str | Path | None, problem: str) -> None:
        self.where = None if where is None else str(where)
        self.problem = " ".join(problem.split())  # one line, whatever the reader said
        super().__init__(self.problem if where is None else f"{where}: {self.problem}")

    def __reduce__(self) -> tuple[type[DataError], tuple[str | None, str]]:
        # Rebuild from both fields: the default pickles only `args` (the joined message),
        # which __init__ cannot take, so a DataError raised in a Ray worker never reached
        # the driver (unpickling failed with a TypeError instead).
        return type(self), (self.where, self.problem)
