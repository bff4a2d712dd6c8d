"""Errors that reach the user as one line: key, value, what is allowed."""

from __future__ import annotations

import sys
from typing import Any


def say(msg: str) -> None:
    """One line to stderr, as the CLI writes its errors: ``imbsweep: <msg>``. A worker a sweep
    started says why it stopped without the word ``error``: the sweep that started it ends with
    the one error line (``IMBSWEEP_WORKER``, ``sweep._procs``)."""
    import os

    worker = os.environ.get("IMBSWEEP_WORKER")
    if worker and msg.startswith("error: "):
        msg = f"worker {worker} stopped: {msg.removeprefix('error: ')}"
    print(f"imbsweep: {msg}", file=sys.stderr)


def one_line(exc: BaseException, limit: int) -> str:
    """``Type: message`` with its whitespace (newlines included) collapsed, at most ``limit`` characters."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:limit]


def db_reason(exc: BaseException, limit: int = 300) -> str:
    """A database error on one line: the driver's own message (SQLAlchemy's wrapper and its
    "Background on this error" link left out), whitespace collapsed."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).split("(Background on this error")[0]
    return " ".join(text.split())[:limit] or type(exc).__name__


class ImbsweepError(Exception):
    """Base class of the errors the CLI prints as one line (no traceback)."""

    exit_code = 2


class ConfigError(ImbsweepError, ValueError):
    """A configuration value is not allowed.

    Args:
        key: dotted config key, e.g. ``optimizer.lr``.
        value: the offending value.
        allowed: what would be accepted, e.g. ``"must be > 0"``.
    """

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r}: {allowed}")

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable, so that it crosses process boundaries (worker pools) intact."""
        return type(self), (self.key, self.value, self.allowed)


class DataError(ConfigError):
    """The data a config points at cannot be used (missing file, column, tiny class)."""


class TrainingFailed(ImbsweepError):
    """A run ended as failed (for example a NaN loss); its MLflow run is already FAILED."""

    exit_code = 1


class StorageError(ImbsweepError):
    """A store cannot be read or written (a full disk, a damaged file, a database gone);
    what was recorded before is kept, and the same command resumes once it is fixed."""

    exit_code = 1
