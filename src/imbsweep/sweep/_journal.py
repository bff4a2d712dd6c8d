"""The local Optuna storage's file: a journal backend on Optuna's public interface
(``optuna.storages.journal.BaseJournalBackend``) that never appends to a torn record and
syncs a running trial's own records with the next record that matters.

Optuna's journal is one JSON record per line; every process reads the whole file and
appends under a lock. Optuna's own ``JournalFileBackend`` is the model: the same reading
(from a remembered byte offset per record number, up to the size the file had when the read
began, a torn last line skipped), the same appending (one write of whole lines under the
lock). What differs is below, in :meth:`JournalFile.append_logs` and :data:`DEFERRED_SYNC`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from enum import IntEnum
from typing import Any

from optuna.storages.journal import BaseJournalBackend

from ..errors import StorageError

log = logging.getLogger(__name__)


class FileLock:
    """An exclusive ``flock`` on the file ``path`` (created if need be), held between
    :meth:`acquire` and :meth:`release` (or in a ``with`` block): a waiter waits in the kernel
    and wakes when the lock is released, and the lock goes with its process (a kill -9 leaves
    nothing to break). The budget lock beside a local storage (``_workers.budget_lock``), and
    the journal's own lock (:func:`journal_lock`: Optuna's journal backend calls ``acquire``
    and ``release``)."""

    def __init__(self, path: str) -> None:
        self.path, self._fd = path, -1

    def acquire(self) -> bool:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        import fcntl

        fd, self._fd = self._fd, -1
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def journal_lock(path: str) -> FileLock:
    """The journal's lock, as the ``lock_obj`` of Optuna's journal backend: a ``flock`` on
    ``<journal>.flock`` (:class:`FileLock`), not Optuna's lock file, which a waiter polls
    with a back-off growing to 1 s (with many workers it slept long after the lock was free)
    and which a killed process left for the others to break after a 30 s grace period. On a
    network file system without ``flock`` (one journal for several machines), use an RDB
    storage (PostgreSQL)."""
    return FileLock(path + ".flock")


class Op(IntEnum):
    """The ``op_code`` of a journal record (Optuna's ``JournalOperation``, in a private module of
    Optuna: the values are the file format, checked against Optuna's in the tests)."""

    CREATE_STUDY = 0
    DELETE_STUDY = 1
    SET_STUDY_USER_ATTR = 2
    SET_STUDY_SYSTEM_ATTR = 3
    CREATE_TRIAL = 4
    SET_TRIAL_PARAM = 5
    SET_TRIAL_STATE_VALUES = 6
    SET_TRIAL_INTERMEDIATE_VALUE = 7
    SET_TRIAL_USER_ATTR = 8
    SET_TRIAL_SYSTEM_ATTR = 9
    DISCARD_TRIALS = 10


#: Optuna journal operations on a running trial's own records (JournalOperation's
#: SET_TRIAL_PARAM, SET_TRIAL_INTERMEDIATE_VALUE, SET_TRIAL_USER_ATTR, SET_TRIAL_SYSTEM_ATTR),
#: appended without an fsync of their own. A killed process loses none of them (the OS holds
#: what was written); a power cut or an OS crash can lose those of the trials running then,
#: back to the last fsynced record: such a trial is RUNNING with no live worker (its process
#: attributes lost, or naming a process that is gone), so the next command re-queues it
#: (``recover_dead``), as it re-queues any trial whose worker died. Every study record, trial
#: creation and trial end is fsynced, and its fsync takes the records before it to the disk.
DEFERRED_SYNC = frozenset({Op.SET_TRIAL_PARAM, Op.SET_TRIAL_INTERMEDIATE_VALUE, Op.SET_TRIAL_USER_ATTR,
                           Op.SET_TRIAL_SYSTEM_ATTR})


class JournalFile(BaseJournalBackend):
    """Optuna's journal file that never appends to a torn record.

    A record cut short (a full disk, a process killed inside its write) is skipped by the
    reader as long as it is the last line; the next append used to land on the fragment and
    make a line that no reader could parse again, so every later read of the file failed for
    every study in it. Here each append, under the journal's lock, first moves a partial last
    line aside into ``<journal>.torn-<time>`` (with a warning naming both files), and a write
    that fails (no space left) is cut back to the last whole record and reported as one line
    naming the file. A line that does not parse in the middle of the file is reported with
    its path and line number.

    A running trial's own records (its params, intermediate values and attributes: ~16 of the
    ~18 appends of a trial, each with an fsync of ~0.5 ms) are written at once, visible to
    every process and kept by the OS when a process is killed, but reach the disk with the
    next study, trial-creation or trial-end record (its fsync takes the whole file) instead of
    an fsync of their own; see :data:`DEFERRED_SYNC`.

    Args:
        path: the journal file (created when missing).
        lock: the journal's lock (``_study.journal_lock``).
    """

    def __init__(self, path: str, lock: FileLock) -> None:
        self.path, self.lock = path, lock
        if not os.path.exists(path):
            open(path, "ab").close()
        self._offsets: dict[int, int] = {0: 0}  # record number -> byte offset of its line, as far as read
        self._end = -1  # where this process's last append left the file: a whole record ends there

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        """The records from number ``log_number_from`` on; a torn last line is skipped (its
        writer is still writing it, or was killed: the next append moves it aside)."""
        with open(self.path, "rb") as f:
            remaining = os.fstat(f.fileno()).st_size  # what another process appends meanwhile waits
            first = 0
            if log_number_from in self._offsets:
                f.seek(self._offsets[log_number_from])
                first = log_number_from
                remaining -= self._offsets[log_number_from]
            bad: tuple[int, str] | None = None
            for number, line in enumerate(f, start=first):
                remaining -= len(line)
                if remaining < 0:
                    break
                if bad is not None:  # a bad line with whole records after it: the file is damaged
                    self._damaged(*bad)
                if not line.endswith(b"\n"):
                    bad = (number, "a record without its end of line")
                    continue
                if number + 1 not in self._offsets:
                    self._offsets[number + 1] = self._offsets[number] + len(line)
                if number < log_number_from:
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    bad = (number, str(exc))
                    del self._offsets[number + 1]
                    continue
                yield record

    def _damaged(self, number: int, why: str) -> None:
        raise StorageError(
            f"the Optuna journal {self.path} is damaged at line {number + 1} ({why}); its first {number} "
            f"records are intact: `head -n {number} {self.path} > fixed.log`, then point "
            "hydra.sweeper.storage at fixed.log")

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        with self.lock:
            size = self._cut_torn_tail(os.path.getsize(self.path))
            text = "\n".join(json.dumps(record, separators=(",", ":")) for record in logs) + "\n"
            try:
                with open(self.path, "ab") as f:
                    f.write(text.encode("utf-8"))
                    f.flush()
                    if any(record.get("op_code") not in DEFERRED_SYNC for record in logs):
                        os.fsync(f.fileno())  # and every record before it, whoever wrote them
                    self._end = f.tell()
            except OSError as exc:
                with contextlib.suppress(OSError):  # (if not, the next append moves it aside)
                    os.truncate(self.path, size)  # no half record left behind
                raise StorageError(f"cannot write the Optuna journal {self.path}: {exc.strerror or exc}; "
                                   "what it holds is intact: make room, then run the same command "
                                   "to resume") from None

    def _cut_torn_tail(self, size: int) -> int:
        """The file's size once a torn last record is moved aside."""
        if not size or size == self._end:
            return size
        with open(self.path, "rb") as f:
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return size
            start = size
            while start > 0:  # back to the last whole record
                step = min(start, 1 << 16)
                f.seek(start - step)
                chunk = f.read(step)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    start = start - step + cut + 1
                    break
                start -= step
            f.seek(start)
            fragment = f.read()
        side = f"{self.path}.torn-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        with open(side, "ab") as out:
            out.write(fragment)
        os.truncate(self.path, start)
        log.warning("the Optuna journal %s ended in a torn record (%d bytes, from a full disk or a process "
                    "killed while writing); it is kept in %s and cut from the journal, which holds every "
                    "whole record", self.path, len(fragment), side)
        return start
