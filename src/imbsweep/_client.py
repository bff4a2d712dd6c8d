"""The MLflow client a process writes and reads with: one per tracking URI, a local SQLite
store created under a lock and put in WAL mode, writes not cut in half by Ctrl-C and retried
when they lose a race; the study's experiment found or created."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ._paths import local_tracking_uri, state_dir, state_of
from ._signals import signals_held
from .names import ARTIFACTS, EXPERIMENT_KIND

log = logging.getLogger(__name__)


def tracking_uri(tracking_cfg: Mapping[str, Any], state: str | Path | None = None) -> str:
    """The configured URI, else MLflow on SQLite in the local state folder."""
    uri = tracking_cfg.get("uri")
    return str(uri) if uri else local_tracking_uri(state_dir(state))


_CLIENTS: dict[str, Any] = {}


def make_client(uri: str) -> Any:
    """An ``MlflowClient``, one per URI and process (MLflow keeps one store per URI anyway;
    this skips the checks below for every later run of a sweep). A local SQLite store is
    created (schema migrations) under a file lock, so several workers starting together on a
    fresh store do not collide, and is put in WAL mode, so readers (``mlflow ui``, another
    process searching runs) never block a training run's writes ("database is locked")."""
    if uri in _CLIENTS:
        return _CLIENTS[uri]
    from mlflow import MlflowClient

    quiet_mlflow_logs()
    if not uri.startswith("sqlite:///"):
        from ._stores import sqlalchemy_url  # postgresql:// means psycopg 3 to SQLAlchemy: use psycopg2

        # a server retries its own 5xx answers; what is left to retry here is an insert race
        return _CLIENTS.setdefault(uri, _Client(MlflowClient(tracking_uri=sqlalchemy_url(uri)), attempts=4,
                                                locked=False))
    import fcntl

    db = Path(uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".init.lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if db.exists() and _half_made(db):
                aside = db.with_name(f"{db.name}.half-made-{time.strftime('%Y%m%d-%H%M%S')}")
                for suffix in ("", "-wal", "-shm"):
                    if Path(f"{db}{suffix}").exists():
                        Path(f"{db}{suffix}").replace(f"{aside}{suffix}")
                log.warning("the MLflow store %s was left half-made (its first command was stopped while it "
                            "created it); it held no runs: moved to %s, and made again", db, aside.name)
            if not db.exists():
                _create_store(db)
            try:
                client = MlflowClient(tracking_uri=uri)
                client.search_experiments(max_results=1)  # the store exists and is migrated now
            except Exception as exc:  # noqa: BLE001 - whatever MLflow says, one line (a store with runs is kept)
                from .errors import StorageError, one_line

                raise StorageError(f"the MLflow store {db} cannot be opened ({one_line(exc, 300)}); it is left as "
                                   f"it is: if an older MLflow made it, `mlflow db upgrade {uri}` upgrades it") from exc
            _use_wal(db)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return _CLIENTS.setdefault(uri, _Client(client))


def _create_store(db: Path) -> None:
    """A new local store made whole beside ``db`` and moved into place, so that a command
    stopped while MLflow creates its tables (about 60 migrations, a second or more) leaves no
    half-made store behind (what such a stop left is removed: the caller holds the init lock)."""
    from mlflow import MlflowClient

    for stale in db.parent.glob(f".{db.name}.creating-*"):
        stale.unlink(missing_ok=True)
    tmp = db.with_name(f".{db.name}.creating-{os.getpid()}")
    MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)
    tmp.replace(db)


def _half_made(db: Path) -> bool:
    """Whether ``db`` is a store whose creation was cut short: it holds no run and no experiment
    of its own, and lacks tables or is not at MLflow's latest schema revision (a store that holds
    anything is never touched: MLflow's own error, such as ``mlflow db upgrade``, stands)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return False
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "runs" in tables and con.execute("SELECT 1 FROM runs LIMIT 1").fetchone():
            return False
        if "experiments" in tables and con.execute("SELECT 1 FROM experiments WHERE name != 'Default' LIMIT 1"
                                                   ).fetchone():
            return False
        if not {"experiments", "runs", "alembic_version"} <= tables:
            return True
        row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return False  # (unreadable: MLflow's own error says so)
    finally:
        con.close()
    return row is None or row[0] != _schema_head()


def _schema_head() -> str:
    """MLflow's latest schema revision, from its migration scripts (alembic's public API)."""
    from alembic.script import ScriptDirectory
    from mlflow.store import db_migrations

    return str(ScriptDirectory(str(Path(db_migrations.__file__).parent)).get_current_head())


class _Client:
    """An ``MlflowClient`` whose writes are not cut in half by Ctrl-C, and whose calls on a
    local SQLite store retry briefly on "database is locked".

    Ctrl-C (or SIGTERM) that lands inside a write is held until the write ends, then
    delivered as usual: a KeyboardInterrupt raised inside SQLAlchemy's commit or connection
    return can leave the pooled SQLite connection holding the write lock, and the run's own
    last write (tagging it KILLED) then waited on its own process for MLflow's 20 s busy
    timeout, retry after retry. Reads (``get_*``, ``search_*``, ``list_*``, ``download_*``)
    stay interruptible. Even in WAL mode SQLite answers a read-then-write transaction that
    meets another process's commit with SQLITE_BUSY at once, without its busy timeout; the
    failed transaction was rolled back, so calling again is safe.

    On every store, local or behind ``mlflow server``, a write that lost an insert race is
    retried too: MLflow's ``set_tag`` and its latest-metric update are a select-then-insert
    (SQLAlchemy's ``merge``), so two workers tagging the study's parent run at the same moment
    can both insert, and the second fails on the unique key (the server answers 400
    BAD_REQUEST with the database's message). Its transaction was rolled back; the retry
    finds the row and updates it."""

    _READS = ("get_", "search_", "list_", "download_")
    # SQLite's and PostgreSQL's words for a unique key another writer inserted first
    _RACES = ("UNIQUE constraint failed", "duplicate key value violates unique constraint")

    def __init__(self, client: Any, attempts: int = 8, locked: bool = True) -> None:
        self._client, self._attempts = client, attempts
        self._retried = (("database is locked",) if locked else ()) + self._RACES

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        guard = contextlib.nullcontext if name.startswith(self._READS) else signals_held

        def call(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(self._attempts):
                try:
                    with guard():
                        return attr(*args, **kwargs)
                except Exception as exc:
                    if attempt == self._attempts - 1 or not any(r in str(exc) for r in self._retried):
                        raise
                    time.sleep(0.1 * (attempt + 1))
            raise AssertionError("unreachable")

        return call


def _use_wal(db: Path) -> None:
    """Switch a SQLite file to write-ahead logging (persistent; a no-op when it already is)."""
    import sqlite3

    con = sqlite3.connect(db, timeout=30)
    try:
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as exc:  # another process holds it; the next start retries
        log.warning("could not switch %s to WAL mode: %s", db, exc)
    finally:
        con.close()


@contextlib.contextmanager
def writing(uri: str, what: str) -> Iterator[None]:
    """A write to the MLflow store at ``uri``; one it does not take (a full disk, a database
    gone, a server that keeps failing) is a ``StorageError`` naming the store and ``what``: the
    platform's failure, not a run's (a sweep stops and re-queues the trial; the same command
    resumes once the store takes writes again)."""
    try:
        yield
    except Exception as exc:
        if not store_failure(exc):  # the write itself is wrong (or a bug): its own error goes on
            raise
        raise store_refused(uri, what, exc) from exc


def store_refused(uri: str, what: str, exc: BaseException) -> Exception:
    """The one-line ``StorageError`` of a write (``what``) the MLflow store at ``uri`` refused."""
    from ._stores import redact
    from .errors import StorageError, db_reason

    return StorageError(f"the MLflow store {redact(uri)} did not take {what} ({type(exc).__name__}: "
                        f"{db_reason(exc)}); what it holds is kept: once it takes writes again, the same "
                        "command resumes")


#: what MLflow answers about a request itself (it will never take it), as opposed to a store
#: that does not take writes (full, locked, gone, failing)
REFUSED = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS",
                     "INVALID_STATE", "BAD_REQUEST"})


def store_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the store does not take writes now (a disk, a database or a server
    failing), not that the write is wrong: an ``OSError``, a database driver's error, a server
    that does not answer, or an ``MlflowException`` other than a refusal (:data:`REFUSED`)."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, OSError | DBAPIError):
        return True
    if isinstance(exc, MlflowException):
        return str(exc.error_code) not in REFUSED
    import requests

    return isinstance(exc, requests.RequestException)


def quiet_mlflow_logs() -> None:
    """MLflow's and alembic's INFO lines (schema migrations) are noise on a user's console."""
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # it logs each database error with its traceback, then raises it (the error's one line says
    # it); a filter, as a logging config a job applies later resets a level (not a filter)
    db_log = logging.getLogger("mlflow.store.db.utils")
    if _no_db_tracebacks not in db_log.filters:
        db_log.addFilter(_no_db_tracebacks)


def _no_db_tracebacks(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("SQLAlchemy database error.")


def connect(cfg: Any, experiment: str | None, client: Any = None) -> tuple[str, Any, str]:
    """The tracking URI and client that ``cfg.tracking`` names, and the id of ``experiment``
    (created if new; on the local store its artifacts go under ``<state_dir>/artifacts``)."""
    state = state_of(cfg)
    uri = tracking_uri(cfg.tracking, state)
    client = client or make_client(uri)
    if experiment is None:
        return uri, client, ""
    local = uri.startswith("sqlite:///") and not cfg.tracking.get("uri")
    return uri, client, get_or_create_experiment(client, experiment, state / ARTIFACTS if local else None)


def ui_link(base: str, route: str) -> str:
    """A link into the MLflow UI at ``base`` that opens ``route`` (``experiments/1``) in its
    model-training view: MLflow 3.17's UI picks its view from a global GenAI / model-training
    switch (default GenAI, remembered in the browser), which the ``workflowType`` parameter
    sets; the experiment tag alone does not."""
    return f"{base}/#/{route}?workflowType=machine_learning"


def deleted_experiment(exp: Any) -> str:
    """What to do about a deleted MLflow experiment (its name is taken until it is purged)."""
    return (f"is a deleted MLflow experiment (id {exp.experiment_id}), whose name stays taken: restore it "
            f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or use another name")


def get_or_create_experiment(client: Any, name: str, artifact_root: Path | None) -> str:
    """The experiment's id; created (with local artifacts under ``artifact_root``) if new,
    and tagged as model training (:data:`EXPERIMENT_KIND`; an older one gets the tag too)."""
    from mlflow.exceptions import MlflowException

    key, kind = EXPERIMENT_KIND
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":  # MLflow would refuse the run with "must be active"
            from .errors import ConfigError

            raise ConfigError("tracking.experiment", name, deleted_experiment(exp))
        if key not in exp.tags:
            client.set_experiment_tag(exp.experiment_id, key, kind)
        return str(exp.experiment_id)
    location = (artifact_root / name).as_uri() if artifact_root else None
    try:
        return str(client.create_experiment(name, artifact_location=location, tags={key: kind}))
    except MlflowException:  # another process created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)
