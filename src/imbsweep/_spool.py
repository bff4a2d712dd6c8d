"""A sweep trial's MLflow writes, off the trial's path: ``tracking.MlflowRun`` appends each
operation (``_writer``) as a JSON line to a spool file in ``<state_dir>/spool/`` and a writer
process (``python -m imbsweep._writer``) applies them to the local SQLite store while the
sweep goes on with the next trial, on another core.

Nothing is lost on the way: a line is in the file (the page cache) before the producer goes
on (the parent run's progress points wait in the sweep's memory for their batch first:
``sweep._mlflow.ParentRun.flush_progress``), so a killed producer's writer still applies all
of it (it ends when its stdin does), and a killed writer's spool is applied by the next
command that settles the folder
(:func:`settle`: the sweep does before it ends dead workers' runs, and when it ends). The writer notes
after each operation how far it got, and a replay finds a run it created by its
:data:`~imbsweep.names.TAG_RECORD`.

Imports neither MLflow nor torch."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import _writer
from ._liveness import proc_start, process_alive
from ._signals import signals_held
from .errors import one_line

log = logging.getLogger(__name__)

SUFFIX = ".spool"
RESTARTS = 3  # a killed writer is started again on its spool this many times, then the sweep stops
BEHIND = 1  # at most this many ended runs not yet applied by the writer when the next run starts


class Spool:
    """One process's spool file for one tracking URI, and its writer process (started on the
    first operation)."""

    def __init__(self, uri: str, folder: Path) -> None:
        self.uri, self.folder = uri, folder
        start = proc_start(os.getpid()) or "0"  # with the pid: a recycled pid is not this process
        self.path = folder / f"{socket.gethostname()}-{os.getpid()}-{start}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        self._fh: Any = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ids: dict[str, str] = {}
        self._uris: dict[str, str] = {}  # a run's artifact URI, by key (as ``_ids``)
        self._n = 0
        self._buf = b""  # the writer's answers: the start of a line not yet whole
        self._why = ""  # an ``error`` the writer answered before it exited
        self._applied = 0  # how far into the spool the writer has applied (bytes; its ``at`` answers)
        self._ends: list[int] = []  # where the last runs' ``end`` operations stop in the spool
        self._restarts = 0
        self._failed = ""  # the writer's error: every later operation is refused with it
        self._used = False  # an operation was submitted (a writer started early may have none)

    def new_key(self) -> str:
        """A run's key in this spool (what its operations name it by until the writer made it)."""
        self._n += 1
        return f"r{self._n}"

    def record_tag(self, key: str) -> str:
        return f"{self.path.name}:{key}"

    def start(self) -> None:
        """Open the spool and start its writer (if not yet): a sweep does so before its first
        run, so that the writer's own start (importing MLflow, opening the store: ~1 s) goes on
        beside the sweep's, instead of the first trial waiting for it."""
        self._check()
        if self._fh is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")  # noqa: SIM115 - open for the spool's life
            self._start()

    def submit(self, op: Mapping[str, Any]) -> None:
        """Append ``op`` and wake the writer (started if need be)."""
        self.start()
        self._used = True
        if op["op"] == "create" and len(self._ends) > BEHIND:
            self._keep_up(self._ends[-BEHIND - 1])
        line = (json.dumps(op, separators=(",", ":"), allow_nan=True) + "\n").encode()
        with signals_held():  # a whole line or none
            self._fh.write(line)
            self._fh.flush()
        if op["op"] == "end":
            self._ends = [*self._ends[-BEHIND:], self._fh.tell()]
        self._wake()
        self._read(block=False)  # the answers never fill the pipe

    def _keep_up(self, offset: int) -> None:
        """Wait until the writer has applied the spool up to ``offset``. The writer runs at the
        lowest CPU priority (``_writer.main``), so that it never slows a trial's training; this
        keeps a machine whose cores are all busy from leaving MLflow ever further behind: a run
        starts once at most :data:`BEHIND` ended runs are not in MLflow yet."""
        self._wake()  # an answer for sure, even if the last one was lost to an interrupt
        t0 = time.monotonic()
        warned = False
        while self._applied < offset:
            if not self._answers(timeout=30.0):
                continue
            if not warned and time.monotonic() - t0 >= 30.0:
                warned = True
                log.warning("waiting for the MLflow writer of %s (%.0f s so far): it gets no idle CPU, or the "
                            "store is locked", self.path, time.monotonic() - t0)

    def training(self, on: bool) -> None:
        """The producer begins (``on``) or ends training: the writer holds its work meanwhile
        (at most ``_writer.HOLD_S``), so that it does not take a core from a training thread."""
        if self._fh is not None and not self._failed:
            self._wake(b"b" if on else b"f")

    def _wake(self, what: bytes = b"\n") -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(what)
            self._proc.stdin.flush()
        except BrokenPipeError:
            self._gone()
            self._wake(b"\n" + what.strip())  # the new writer: to work, and whether we train

    def _start(self, resume: bool = False) -> None:
        # stdin: wake-ups, its end the end of the work; stdout: answers; its own session, so
        # Ctrl-C in the terminal reaches the producer, which ends its runs KILLED through it
        with open(self.path.with_name(self.path.name + ".log"), "ab") as err:
            self._proc = subprocess.Popen([sys.executable, "-m", _writer.__name__, str(self.path), self.uri,
                                           *(["--resume"] if resume else [])],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                          start_new_session=True)

    def _check(self) -> None:
        if self._failed:
            from .errors import StorageError

            raise StorageError(self._failed)

    def _read(self, block: bool, timeout: float | None = None) -> bool:
        """Take in the writer's answers (``created <key> <run id> <artifact URI>``, ``at <offset>``, ``skipped
        <what>``, ``error <message>``, a line each), waiting for some when ``block`` (at most
        ``timeout`` seconds); False once its stdout has ended (it exited)."""
        import select

        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()  # read raw: select sees no data held in a Python buffer
        if not select.select([fd], [], [], timeout if block else 0)[0]:
            return True
        data = os.read(fd, 65536)
        if not data:
            return False
        *lines, self._buf = (self._buf + data).split(b"\n")
        for raw in lines:
            line = raw.decode()
            if line.startswith("created "):
                _, k, run_id, uri = line.split(" ", 3)
                self._ids[k] = run_id
                self._uris[k] = uri
            elif line.startswith("at "):
                self._applied = max(self._applied, int(line.split()[1]))
            elif line.startswith("skipped "):  # MLflow refused an operation: said, not dropped silently
                log.warning("MLflow refused a record of %s, skipped: %s", self.path.name,
                            line[len("skipped "):].strip())
            elif line.startswith("error "):
                self._why = line.removeprefix("error ").strip()
        return True

    def _answers(self, timeout: float | None = None) -> bool:
        """Wait for the writer's next answers, at most ``timeout`` seconds; False when it had
        exited instead, and was started again and woken (:meth:`_gone`)."""
        if not self._read(block=True, timeout=timeout):
            self._gone()
            self._wake()
            return False
        return True

    def run_id(self, key: str) -> str:
        """The id MLflow gave the run ``key``: waits for the writer to create it."""
        self._check()
        self._read(block=False)
        while key not in self._ids:
            self._answers()
        return self._ids[key]

    def artifact_dir(self, key: str) -> Path | None:
        """The local folder of the run ``key``'s artifacts, once the writer has made the run
        (None before, or on a store whose artifacts are not local files)."""
        self._read(block=False)
        uri = self._uris.get(key)
        return None if uri is None else _writer.local_dir(uri)

    def _drain(self) -> tuple[str, int]:
        """The writer's last answers (to the end of its stdout), and its exit status: ``(error
        message or "", returncode)``."""
        assert self._proc is not None
        while self._read(block=True):
            pass
        why, self._why, self._buf = self._why, "", b""
        return why, self._proc.wait()

    def _gone(self) -> None:
        """The writer ended while work was left: see :meth:`_restart_or_fail`."""
        self._restart_or_fail(*self._drain())

    def _restart_or_fail(self, why: str, rc: int) -> None:
        """A writer that was killed (no error of its own) is started again on the same spool,
        from where it got (at most :data:`RESTARTS` times); its error is raised (one line; the
        spool is kept for the next command)."""
        from .errors import StorageError

        if not why and self._restarts < RESTARTS:
            self._restarts += 1
            log.warning("the MLflow writer process exited with %s; started again on %s", rc, self.path)
            self._start(resume=True)
            return
        self._failed = (f"the MLflow writer process stopped: {why or f'exited with {rc}'}; the runs' records are "
                        f"kept in {self.path}: run the same command again to apply them")
        raise StorageError(self._failed)

    def close(self, wait: bool = True) -> None:
        """No more operations: the writer applies the rest and ends (``wait``: for it)."""
        if self._fh is None:
            return
        self._check()
        self._fh.close()
        self._fh = None
        if not self._used:  # started early and given nothing (the sweep stopped before its first run)
            assert self._proc is not None
            self._proc.kill()  # (it may still be importing MLflow: nothing to wait for)
            self._proc.wait()
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            for p in (self.path, self.path.with_name(self.path.name + ".log")):
                p.unlink(missing_ok=True)
            return
        while True:
            assert self._proc is not None and self._proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
            if not wait:
                return
            why, rc = self._drain()
            if rc == 0 and not why:
                return
            self._restart_or_fail(why, rc)  # raises, or a new writer finishes the spool


def serves(uri: str) -> bool:
    """Whether ``uri`` is a store the spool is for: the local SQLite file (its per-row cost)."""
    return uri.startswith("sqlite:///")


def enabled(uri: str, tracking: Mapping[str, Any]) -> bool:
    """Whether writes to ``uri`` go through a spool: a store it serves, and ``tracking.spool``."""
    return serves(uri) and bool(tracking.get("spool", True))


_SPOOLS: dict[tuple[str, Path], Spool] = {}


def spool_for(uri: str, folder: Path) -> Spool:
    """This process's spool for ``uri`` (made on first use, closed at exit)."""
    key = (uri, folder)
    if key not in _SPOOLS:
        if not _SPOOLS:
            atexit.register(close_all)
        _SPOOLS[key] = Spool(uri, folder)
    return _SPOOLS[key]


def start_writer(config: Any) -> None:
    """Where a sweep's trials will spool (``config``: the sweep's), this process's writer
    started now (:meth:`Spool.start`)."""
    from ._client import tracking_uri
    from ._paths import state_of
    from .names import SPOOL

    uri = tracking_uri(config.tracking, state_of(config))
    if enabled(uri, config.tracking):
        spool_for(uri, state_of(config) / SPOOL).start()


def close_all(strict: bool = False) -> None:
    """Every spool of this process closed and its writer done; ``strict``: the first writer's
    error is raised (after all are closed), else logged."""
    spools = list(_SPOOLS.values())
    _SPOOLS.clear()
    error: Exception | None = None
    for s in spools:
        try:
            s.close()
        except Exception as exc:  # noqa: BLE001 - the others still close; the spool stays for a replay
            if strict and error is None:
                error = exc
            else:
                log.warning("%s", exc)
    if error is not None:
        raise error


def settle(folder: Path, uri: str, timeout_s: float = 300.0) -> int:
    """Every spool in ``folder`` whose producer is gone is applied: waited for while its writer
    still runs, replayed here when that was killed too. Spools of live processes (other
    workers) are theirs. Returns how many were replayed here."""
    if not folder.is_dir():
        return 0
    replayed = 0
    own = {s.path for s in _SPOOLS.values()}
    for path in sorted(folder.glob("*" + SUFFIX)):
        parts = path.name[:-len(SUFFIX)].rsplit("-", 3)  # host-pid-start-random
        if path in own or len(parts) != 4 or not parts[1].isdigit():
            continue
        host, pid, start = parts[0], int(parts[1]), parts[2]
        if process_alive(host, pid, None if start == "0" else start) is not False:  # alive, or elsewhere
            continue
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:  # its writer just finished
            continue
        with fh:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:  # its writer is still applying it
                    if time.monotonic() > deadline:
                        from .errors import StorageError

                        raise StorageError(f"the MLflow writer of {path} has not finished in {timeout_s:.0f} s; "
                                           "run the same command again once it has") from None
                    time.sleep(0.05)
            if not path.exists():  # applied and removed by its writer meanwhile
                continue
            try:
                replay = _writer.Replay(path, uri, recovering=True)
                replay.step(final=True)
            except Exception as exc:  # noqa: BLE001 - one line; the spool stays for the next try
                from .errors import StorageError

                raise StorageError(f"cannot apply the MLflow records kept in {path}: {one_line(exc, 500)}; "
                                   "run the same command again once the store can be written") from exc
            replay.finish()
            replayed += 1
            log.info("applied the MLflow records left in %s", path)
    return replayed
