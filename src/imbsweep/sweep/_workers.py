"""Coordination between workers that share one study: an exact trial budget, and recovery
of trials whose worker died.

Budget: "count finished + running trials, then ask for a new one only if that is below the
target" runs under a lock (a file lock beside a local journal or SQLite file, an advisory
lock on PostgreSQL and MySQL), so concurrent workers never create more than ``n_trials``.

Liveness: every trial records the host, pid and start time of the process running it.
A RUNNING trial whose process on this host is gone, or (RDB storages with
``heartbeat_interval``) whose heartbeat is stale wherever it ran, is marked FAIL, flagged
as re-queued (it does not count towards the target) and its parameters are enqueued again,
so the study still ends with exactly ``n_trials`` finished (unless the same parameters were
lost :data:`MAX_LOST` times: :func:`requeue`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna

from .._liveness import proc_start as _proc_start
from .._liveness import process_alive
from ..names import (
    ATTR_BASELINE,
    ATTR_FAIL_REASON,
    ATTR_HOST,
    ATTR_LOST,
    ATTR_OUTCOME,
    ATTR_PID,
    ATTR_REQUEUED,
    ATTR_REQUEUED_FROM,
    ATTR_START,
    OUTCOME_CUT,
)

log = logging.getLogger(__name__)


def this_process() -> dict[str, Any]:
    return {ATTR_HOST: socket.gethostname(), ATTR_PID: os.getpid(), ATTR_START: _proc_start(os.getpid())}


def mark_running(trial: optuna.Trial) -> None:
    for k, v in this_process().items():
        trial.set_user_attr(k, v)


MAX_LOST = 3  # a trial's parameters whose process or job is lost this often fail for good (see requeue)


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str, lost: bool = False) -> bool:
    """Fail ``trial`` without counting it and enqueue its parameters again; True.

    ``lost``: the platform lost the trial's run (its worker died, its heartbeat stopped, its
    launcher's job was killed): the twin counts such losses (:data:`ATTR_LOST`), and the
    :data:`MAX_LOST`-th loss of the same parameters fails the trial for good instead (counted;
    False), so a trial that always kills its process (out of memory) cannot loop for ever.
    Ctrl-C is not a loss."""
    storage = study._storage
    losses = int(trial.user_attrs.get(ATTR_LOST, 0)) + lost
    if losses >= MAX_LOST:
        storage.set_trial_user_attr(trial._trial_id, ATTR_FAIL_REASON, f"lost {losses} times; last: {reason}"[:2000])
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        log.warning("trial %d of %s: lost %d times (last: %s); failed, not re-queued", trial.number,
                    study.study_name, losses, reason[:300])
        return False
    storage.set_trial_user_attr(trial._trial_id, ATTR_REQUEUED, True)
    storage.set_trial_user_attr(trial._trial_id, ATTR_FAIL_REASON, reason[:2000])
    storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    attrs: dict[str, Any] = {ATTR_REQUEUED_FROM: trial.number}
    if trial.user_attrs.get(ATTR_BASELINE):
        attrs[ATTR_BASELINE] = True
    if losses:
        attrs[ATTR_LOST] = losses
    study.enqueue_trial(trial.params, user_attrs=attrs)
    return True


def finish(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    """Tell Optuna the outcome a trial's run recorded (``ATTR_OUTCOME``: its MLflow run has
    ended) when its worker could not: False if it has none, or was finished meanwhile."""
    outcome = trial.user_attrs.get(ATTR_OUTCOME)
    if not outcome or outcome.get("state") == OUTCOME_CUT:  # (the platform's failure: recover_dead re-queues it)
        return False
    state = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
             "fail": optuna.trial.TrialState.FAIL}[outcome["state"]]
    try:
        if state == optuna.trial.TrialState.FAIL:
            study._storage.set_trial_user_attr(trial._trial_id, ATTR_FAIL_REASON, outcome.get("reason", ""))
        study.tell(trial.number, outcome.get("values") if state == optuna.trial.TrialState.COMPLETE else None,
                   state=state)
    except (RuntimeError, ValueError):  # finished meanwhile (another worker told it)
        return False
    return True


def recover_dead(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Finish or re-queue RUNNING trials whose worker process is gone; return the re-queued.

    A trial whose run recorded its outcome is told that outcome (its MLflow run ended
    already); the others are failed and re-queued. Called under the budget lock, where a
    RUNNING trial without a process is one whose worker died between asking for it and
    recording itself on it (both happen under the lock)."""
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    storage = study._storage
    stale: set[int] = set()
    if isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage):
        stale = set(storage._get_stale_trial_ids(study._study_id))
    dead = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if ATTR_HOST not in t.user_attrs:
            alive: bool | None = False
        else:
            alive = process_alive(t.user_attrs.get(ATTR_HOST), t.user_attrs.get(ATTR_PID),
                                  t.user_attrs.get(ATTR_START))
        if (alive is False or t._trial_id in stale) and finish(study, t):
            log.warning("trial %d: its worker died after its run ended; told Optuna its outcome (%s)",
                        t.number, t.user_attrs[ATTR_OUTCOME]["state"])
        elif alive is False or t._trial_id in stale:
            cut = (t.user_attrs.get(ATTR_OUTCOME) or {}).get("state") == OUTCOME_CUT
            why = (f"cut by the platform: {t.user_attrs[ATTR_OUTCOME].get('reason', '')}" if cut else
                   f"worker process {t.user_attrs.get(ATTR_PID)} died" if alive is False else
                   f"no heartbeat from its worker on {t.user_attrs.get(ATTR_HOST)}")
            try:  # (a store that refused the trial's writes did not lose its process: not a loss)
                again = requeue(study, t, why, lost=not cut)
            except RuntimeError:  # finished meanwhile, or another worker recovered it first
                continue
            dead.append(study._storage.get_trial(t._trial_id))  # (with its reason, for its MLflow run)
            if again:
                log.warning("trial %d: %s; marked FAIL and re-queued", t.number, why)
    return dead


@contextlib.contextmanager
def budget_lock(storage: Any, study_name: str, journal_path: Path | None) -> Iterator[None]:
    """Serialise "count, then ask" among all workers of a study."""
    key = int.from_bytes(hashlib.sha256(f"imbsweep:{study_name}".encode()).digest()[:8], "big", signed=True)
    if journal_path is not None or _sqlite_path(storage) is not None:
        from ._journal import FileLock

        with FileLock(str(journal_path or _sqlite_path(storage)) + f".{key & 0xFFFFFFFF:08x}.lock"):
            yield
        return
    engine = getattr(storage, "engine", None)
    dialect = engine.dialect.name if engine is not None else ""
    if dialect in ("postgresql", "mysql", "mariadb"):
        from sqlalchemy import text

        from ._study import RDB_RETRY_DELAYS, _disconnected

        assert engine is not None
        lock = ("SELECT pg_advisory_lock(:k)", "SELECT pg_advisory_unlock(:k)", {"k": key}) if \
            dialect == "postgresql" else ("SELECT GET_LOCK(:k, 600)", "SELECT RELEASE_LOCK(:k)",
                                          {"k": f"imbsweep:{study_name}"})
        for delay in (*RDB_RETRY_DELAYS, None):  # a database restart is waited for, as in the storage
            conn = None
            try:
                conn = engine.connect()
                conn.execute(text(lock[0]), lock[2])
                break
            except Exception as exc:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                if not _disconnected(exc):
                    raise
                if delay is None:
                    from .._stores import redact
                    from ..errors import StorageError

                    raise StorageError(f"the Optuna storage {redact(str(engine.url))} is unreachable "
                                       f"({str(exc).splitlines()[0]}); run the same command to resume once it "
                                       "is back") from None
                log.warning("budget lock: connection lost (%s); retry in %.1f s", str(exc).splitlines()[0], delay)
                time.sleep(delay)
        assert conn is not None
        try:
            yield
        finally:
            try:
                conn.execute(text(lock[1]), lock[2])
                conn.commit()
            except Exception as exc:
                if not _disconnected(exc):
                    raise
                # the session is gone, and the database released its lock with it
            finally:
                conn.close()
        return
    log.warning("no lock for this storage: concurrent workers may overshoot n_trials")
    yield


def _sqlite_path(storage: Any) -> Path | None:
    url = str(getattr(storage, "url", "") or "")
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    return None
