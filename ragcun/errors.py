"""Errors that name what is wrong with the user's input (file, line, field)."""

from __future__ import annotations


class RagcunError(Exception):
    """Base class: entry points print the message and exit non-zero, without a traceback."""


class DataError(RagcunError, ValueError):
    """Malformed or inconsistent input data. The message starts with ``file:line:`` where known."""

    def __init__(self, message: str, path: object | None = None, line: int | None = None, field: str | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f":{line}"
            where += ": "
        if field is not None:
            message = f"field '{field}': {message}"
        super().__init__(where + message)
        self.path, self.line, self.field = path, line, field


class CheckpointError(RagcunError, ValueError):
    """A file that is not a readable ragcun checkpoint."""
