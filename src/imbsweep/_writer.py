"""Applying a run's record to MLflow: :class:`Applier` turns the operations ``tracking.MlflowRun``
describes (create a run, a batch of metrics / params / tags, its dataset input, its files, its
end) into ``MlflowClient`` calls. ``MlflowRun`` applies them in its own process, or hands
them to a writer process through a spool file (``_spool``); ``python -m imbsweep._writer``
is that process.

Every operation is a JSON-able dict, so the same code writes a run in place and replays a
spool after a kill. Applying one twice is harmless (MLflow skips a metric value it holds,
a tag or param set again to its value is unchanged, the files are overwritten with the same
bytes), except creating the run: a replay first looks for the run by its
:data:`~imbsweep.names.TAG_RECORD`.

The writer holds a run's writes while its producer trains (but for run creations: the producer
may wait for a run's id) and applies what it finds together, a run's batches merged into one
``log_batch`` (:func:`coalesce`). On short trials the writer's work, not the trial's, sets the
sweep's pace (docs/benchmarks.md, platform overhead)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import select
import signal
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import one_line
from .names import TAG_RECORD

log = logging.getLogger(__name__)

MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100  # MLflow's log_batch limits per request
#: while the producer trains (it sent ``b``, not yet ``f``), operations wait at most this long:
#: the writer's work then lands between trials, not among a trial's training threads
HOLD_S = float(os.environ.get("IMBSWEEP_WRITER_HOLD_S", "2.0"))  # (a test on a busy machine sets more)


class Applier:
    """Applies :mod:`tracking` operations with one MLflow client; remembers each run's id and
    artifact location by the key its ``create`` gave it."""

    def __init__(self, uri: str, client: Any = None, replay: bool = False) -> None:
        from ._client import make_client

        self.client = client or make_client(uri)
        self.replay = replay  # a replay after a kill: a ``create`` may have been applied already
        self.runs: dict[str, tuple[str, str]] = {}  # key -> (run id, artifact URI)

    def run_id(self, key: str) -> str:
        return self.runs[key][0]

    def apply(self, op: Mapping[str, Any]) -> None:
        kind, key = op["op"], str(op["key"])
        if kind == "create":
            self._create(key, op)
            return
        if kind == "attach":  # a run that exists (a study's parent run): later operations name it by key
            self.runs[key] = (str(op["run_id"]), str(op.get("artifact_uri", "")))
            return
        run_id, artifact_uri = self.runs[key]
        if kind == "batch":
            self._batch(run_id, op.get("metrics") or [], op.get("params") or [], op.get("tags") or {})
        elif kind == "inputs":
            from .data import dataset_input

            self.client.log_inputs(run_id, datasets=[dataset_input(op["dataset"])])
        elif kind == "files":
            self._files(run_id, artifact_uri, op.get("texts") or {}, op.get("tables") or {}, op.get("confusion"))
        elif kind == "end":
            self.client.set_terminated(run_id, status=str(op["status"]))
        else:
            raise ValueError(f"unknown record operation {kind!r}")

    def _create(self, key: str, op: Mapping[str, Any]) -> None:
        tags = dict(op["tags"])
        run = None
        if self.replay and TAG_RECORD in tags:  # created before the kill, but not noted as done
            found = self.client.search_runs([str(op["experiment_id"])],
                                            f"tags.`{TAG_RECORD}` = '{tags[TAG_RECORD]}'", max_results=1)
            run = found[0] if found else None
        if run is None:
            run = self.client.create_run(str(op["experiment_id"]), run_name=op.get("run_name"), tags=tags)
        self.runs[key] = (run.info.run_id, run.info.artifact_uri)

    def _batch(self, run_id: str, metrics: list[Any], params: list[Any], tags: Mapping[str, str]) -> None:
        """In as few ``log_batch`` calls as MLflow's limits allow (a batch holds at most 1000
        values in all)."""
        from mlflow.entities import Metric, Param, RunTag

        ms = [Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in metrics]
        ps = [Param(k, v) for k, v in params]
        ts_ = [RunTag(k, v) for k, v in tags.items()]
        per = MAX_METRICS - MAX_TAGS - MAX_PARAMS
        for i in range(max(-(-len(ms) // per), -(-len(ts_) // MAX_TAGS), -(-len(ps) // MAX_PARAMS))):
            self.client.log_batch(run_id, metrics=ms[i * per:(i + 1) * per],
                                  params=ps[i * MAX_PARAMS:(i + 1) * MAX_PARAMS],
                                  tags=ts_[i * MAX_TAGS:(i + 1) * MAX_TAGS])

    def _files(self, run_id: str, artifact_uri: str, texts: Mapping[str, str], tables: Mapping[str, Any],
               confusion: Mapping[str, Any] | None) -> None:
        """The run's artifact files: ``texts`` as they are, ``tables`` (columns) as CSV, and the
        confusion-matrix PNG drawn here (``{"matrix", "names", "title"}``); straight into the
        run's folder on a local store."""
        local = local_dir(artifact_uri)
        if local is not None:  # a local store: written in place (no copy, no get_run)
            write_files(local, texts, tables, confusion)
            return
        with tempfile.TemporaryDirectory() as tmp:
            write_files(Path(tmp), texts, tables, confusion)
            self.client.log_artifacts(run_id, tmp)


def write_files(out: Path, texts: Mapping[str, str], tables: Mapping[str, Any],
                confusion: Mapping[str, Any] | None) -> None:
    """A ``files`` operation's files in the folder ``out`` (made if need be), each whole or not
    at all (written beside, then renamed: a kill leaves no half a file)."""

    def put(name: str, write: Any) -> None:
        # beside the folder, not in it (MLflow would list it); its suffix kept (Pillow picks the format by it)
        part = out.parent / f".part-{os.getpid()}-{out.name}-{name}"
        try:
            write(part)
            os.replace(part, out / name)
        finally:
            part.unlink(missing_ok=True)

    out.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        put(name, lambda p, text=text: p.write_text(text, encoding="utf-8"))
    for name, columns in tables.items():
        put(name, lambda p, columns=columns: p.write_text(csv_text(columns), encoding="utf-8"))
    if confusion is not None:
        import numpy as np

        from .artifacts import plot_confusion

        put("confusion_matrix.png", lambda p: plot_confusion(
            np.asarray(confusion["matrix"]), tuple(confusion["names"]), str(confusion["title"]), p))


def csv_text(columns: Mapping[str, list[Any]]) -> str:
    """A table's columns as CSV, as ``pandas.DataFrame(columns).to_csv(index=False)`` writes
    them (a missing value empty, floats as Python shows them), without building a frame."""
    import csv
    import io
    import math

    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    def column(values: list[Any]) -> list[Any]:
        present = [v for v in values if not missing(v)]
        # pandas makes a column of numbers with a float or a gap in it floats (1 -> 1.0)
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)
        floats = numbers and (len(present) < len(values) or any(isinstance(v, float) for v in present))
        return ["" if missing(v) else float(v) if floats else v for v in values]

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*(column(list(v)) for v in columns.values()), strict=True))
    return buf.getvalue()


def local_dir(uri: str) -> Path | None:
    """The folder of a ``file:`` (or scheme-less) artifact URI; None for any other store (or
    none: a run attached by its id has no URI here)."""
    from urllib.parse import unquote, urlparse

    if not uri:
        return None

    parsed = urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    return Path(uri) if not parsed.scheme else None


# -- a spool's writer ---------------------------------------------------------------------
def done_path(spool: Path) -> Path:
    """Where a spool's writer notes how far it got and the runs it created."""
    return spool.with_name(spool.name + ".done")


#: what MLflow answers about an operation itself (it will never take it), as opposed to the store
#: not taking writes (locked, full, gone): such an operation is skipped with a warning
REFUSED = ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "INVALID_STATE",
           "BAD_REQUEST")


def refused(exc: Exception) -> bool:
    """Whether ``exc`` says the operation is wrong (skip it) rather than the store unwritable (stop)."""
    if isinstance(exc, KeyError | ValueError | TypeError):  # a run never created, a value MLflow cannot take
        return True
    return getattr(exc, "error_code", None) in REFUSED


CREATE = b'{"op":"create"'  # how a spooled ``create`` line starts


def coalesce(steps: list[tuple[int, Any]]) -> list[tuple[int, Any, list[Any]]]:
    """``(offset, op, parts)`` for each spooled operation in order, where a run's later
    ``batch`` operations are merged into its first one here (``op`` None where one was
    merged away; ``parts``: what a merged one was made of): one ``log_batch`` instead of
    several, each a few SQLite transactions. Batches commute with a run's other operations
    (its inputs, its files) and with other runs'; they are not merged across the run's
    ``end``, nor when they set the same param (MLflow refuses a batch that holds one twice).
    A replay after a kill may apply a merged part again: harmless (see the module)."""
    out: list[tuple[int, Any, list[Any]]] = []
    open_: dict[str, int] = {}  # run key -> index in ``out`` of its batch that takes later ones
    for offset, op in steps:
        if not isinstance(op, dict) or op.get("op") != "batch":
            if isinstance(op, dict) and op.get("op") in ("end", "create", "attach"):
                open_.pop(str(op.get("key")), None)
            out.append((offset, op, [op]))
            continue
        key = str(op.get("key"))
        at = open_.get(key)
        if at is not None:
            first = out[at][1]
            if not {p[0] for p in first.get("params") or []} & {p[0] for p in op.get("params") or []}:
                merged = {**first, "metrics": [*(first.get("metrics") or []), *(op.get("metrics") or [])],
                          "params": [*(first.get("params") or []), *(op.get("params") or [])],
                          "tags": {**(first.get("tags") or {}), **(op.get("tags") or {})}}
                out[at] = (out[at][0], merged, [*out[at][2], op])
                out.append((offset, None, []))
                continue
        open_[key] = len(out)
        out.append((offset, op, [op]))
    return out


class Replay:
    """Applies a spool file's operations from where the last writer stopped (its ``.done``
    note: appended lines, the offset after each operation and each run made), noting progress
    after each one."""

    def __init__(self, spool: Path, uri: str, recovering: bool) -> None:
        self.spool, self.done = spool, done_path(spool)
        self.offset = 0
        runs: dict[str, tuple[str, str]] = {}
        for line in (self.done.read_bytes().splitlines() if self.done.exists() else []):
            try:
                entry = json.loads(line)
            except ValueError:  # a note cut short by a kill: the operation is applied again
                continue
            if "o" in entry:
                self.offset = int(entry["o"])
            else:
                runs[str(entry["k"])] = (str(entry["id"]), str(entry["uri"]))
        self.applier = Applier(uri, replay=recovering)
        self.applier.runs = runs
        self.answered: set[str] = set(runs)
        self.skipped: list[str] = []  # "<op> <key>: <why>" of the operations MLflow refused
        self._note_fh: Any = None

    def step(self, final: bool, created: Any = None, hold: bool = False) -> None:
        """Apply every whole line past the offset (``final``: a torn last line is dropped, with
        a warning); the key of each run created is passed to ``created`` as soon as it is made
        (a trial may be waiting for its run's id). ``hold`` (the producer trains): only up to
        the last ``create``, the rest left for later. A run's ``batch`` operations met together
        go to MLflow as one (:func:`coalesce`)."""
        with open(self.spool, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        lines = data[:end].splitlines()
        if hold:  # (``Spool.submit`` writes compact JSON, "op" first)
            lines = lines[:1 + max((i for i, ln in enumerate(lines) if ln.startswith(CREATE)), default=-1)]
        steps: list[tuple[int, Any]] = []  # (offset after the line, its operation, or the error parsing it)
        for line in lines:
            self.offset += len(line) + 1
            if line.strip():
                try:
                    steps.append((self.offset, json.loads(line)))
                except ValueError as exc:
                    steps.append((self.offset, exc))
        for offset, op, parts in coalesce(steps):
            made = None if op is None else self._apply(op, parts)
            self._note(made, offset)  # a run is noted before it is answered
            if made is not None and op["op"] == "create" and created is not None:
                created(made)
        if final and not hold and data[end:].strip():
            log.warning("dropped a torn last record of %s (%d bytes)", self.spool, len(data) - end)

    def _apply(self, op: Any, parts: list[Any]) -> str | None:
        """One operation (``parts``: the batches a coalesced one was made of); one MLflow
        refuses is skipped with a warning, a coalesced one applied again part by part. Returns
        the key of the run it made known (a ``create`` or ``attach``), else None."""
        try:
            if isinstance(op, Exception):
                raise op
            self.applier.apply(op)
        except Exception as exc:
            if not refused(exc):
                raise
            if len(parts) > 1:
                for part in parts:  # (batches: none makes a run)
                    self._apply(part, [part])
                return None
            why = one_line(exc, 500)
            what = f"{op.get('op')} {op.get('key')}" if isinstance(op, dict) else "a garbled line"
            self.skipped.append(f"{what}: {why}")
            log.warning("skipped %s of %s: %s", what, self.spool, why)
            return None
        return str(op["key"]) if op["op"] in ("create", "attach") else None

    def _note(self, made: str | None, offset: int) -> None:
        """Note a run made (its key, if one) and how far the spool is applied (``offset``)."""
        if self._note_fh is None:
            self._note_fh = open(self.done, "ab")  # noqa: SIM115 - closed in finish
        if made is not None:
            run_id, uri = self.applier.runs[made]
            self._note_fh.write((json.dumps({"k": made, "id": run_id, "uri": uri}) + "\n").encode())
        self._note_fh.write((json.dumps({"o": offset}) + "\n").encode())
        self._note_fh.flush()

    def finish(self) -> None:
        """All applied: the spool and its note go."""
        if self._note_fh is not None:
            self._note_fh.close()
        for p in (self.spool, self.done, self.spool.with_name(self.spool.name + ".log")):
            p.unlink(missing_ok=True)


def idle_priority() -> None:
    """This process runs only on CPU time nothing else wants (Linux's ``SCHED_IDLE``; elsewhere
    the lowest nice value): a trial's training threads, which wait for each other, are never
    held up by the writer taking a core from one of them."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)


def main(argv: list[str]) -> int:
    """``python -m imbsweep._writer SPOOL URI [--resume]``: applies what the producer appends
    to SPOOL, woken by a newline on stdin (``b`` / ``f`` there: the producer begins / ends
    training; operations then wait for ``f``, at most :data:`HOLD_S`, but for run creations
    and what precedes them); answers ``created <key> <run id> <artifact URI>`` and ``at
    <offset>`` (applied so far) on stdout; on stdin's end (the producer closed it, exited or
    was killed) applies the rest, removes the spool and exits (answering nothing once the
    producer is gone). An error is one line ``error <message>`` on stdout and
    exit 1, the spool kept for the next command (:func:`imbsweep._spool.settle`)."""
    spool, uri, resume = Path(argv[0]), argv[1], "--resume" in argv[2:]
    # Ctrl-C and SIGTERM are the producer's: this process finishes the writes it was given
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # the answers get a stdout of their own; anything a library prints goes to the log (stderr)
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    def say(*lines: str) -> None:
        """Answers to the producer; none once it is gone (killed: the work goes on)."""
        with contextlib.suppress(BrokenPipeError):
            out.write("".join(line + "\n" for line in lines))
            out.flush()
    try:
        lock = open(spool, "rb")  # noqa: SIM115 - held for the process's life: "a writer owns this spool"
    except FileNotFoundError:
        if resume:  # the writer before was killed after it had applied and removed it all
            return 0
        raise
    fcntl.flock(lock, fcntl.LOCK_EX)
    idle_priority()
    if not spool.exists():  # applied and removed by a replay while this one waited for the lock
        return 0
    try:
        replay = Replay(spool, uri, recovering=resume)  # resume: a writer before this one was killed

        def created(key: str) -> None:
            say(f"created {key} {' '.join(replay.applier.runs[key])}")  # its id and artifact URI

        for key in replay.answered:  # what the killed one created and noted
            created(key)

        # while the producer trains (between its ``b`` and ``f``), a wake-up (newline) applies the
        # spool up to its last run creation only (the producer may be waiting for the run's id);
        # the rest waits for the ``f``, or for ``due``
        training, due = False, None
        while True:
            wait = None if due is None else max(0.0, due - time.monotonic())
            chunk = os.read(0, 65536) if select.select([0], [], [], wait)[0] else None
            woke = False
            for byte in chunk or b"":
                woke = woke or byte == ord("\n")
                if byte in b"bf":
                    training = byte == ord("b")
                    woke = woke or (not training and due is not None)
            now = chunk == b"" or (due is not None and time.monotonic() >= due) or (woke and not training)
            if not now and not woke:
                continue
            if not now and due is None:
                due = time.monotonic() + HOLD_S
            replay.step(final=chunk == b"", created=created, hold=not now)
            if now:
                due = None
            # applied so far: the producer waits on it (_spool.BEHIND)
            say(*[f"skipped {skipped}" for skipped in replay.skipped], f"at {replay.offset}")
            replay.skipped.clear()
            if chunk == b"":
                break
    except Exception as exc:  # noqa: BLE001 - one line to the producer; the spool stays for a replay
        text = one_line(exc, 2000)
        log.error("%s", text)
        with contextlib.suppress(OSError):
            say(f"error {text}")
        return 1
    replay.finish()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sys.exit(main(sys.argv[1:]))
