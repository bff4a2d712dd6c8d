"""The job side of a sweep for any app: the task function the launcher runs is the app's own,
wrapped (:class:`TrialTask`), and a trial of an app other than imbsweep's is recorded here.

The sweeper hands each job its trial through ``hydra.sweeper.trial`` (a per-job override of
the Hydra config, never of the app's own config): the study, the Optuna trial, the MLflow
experiment and parent run, the state folder. A trial of any app is one MLflow child run of the
study's parent run, the **active run** while the task function runs (``mlflow.log_metric``
inside it lands there), with the app's resolved config as params, ``config.yaml`` and
``overrides.yaml`` as artifacts, its returned value(s) under the objective name(s), and the
imbsweep tags a study's runs carry. ``imbsweep.report(step, value)`` inside the task function
reports to the trial (curve, pruning). A job without ``hydra.sweeper.trial`` (the same
``compare --reseed`` uses, with ``role: reseed``) is recorded the same way, without Optuna.
"""

from __future__ import annotations

import contextvars
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..names import (
    ATTR_ARM,
    ATTR_OUTCOME,
    ATTR_RUN_ID,
    COMPLETE,
    FAILED,
    KILLED,
    OUTCOME_CUT,
    PRUNED,
    posthoc_attr,
)
from ._app import is_own_app

log = logging.getLogger(__name__)
TRIAL_KEY = "hydra.sweeper.trial"  # where a job finds its trial (_usertask.trial_context)


def trial_override(ctx: Mapping[str, Any]) -> str:
    """``hydra.sweeper.trial=<ctx>``: a hydra override, so the app's own config (its
    ``.hydra/config.yaml``, ``overrides.yaml``, ``override_dirname``) never holds it. ``ctx`` is
    JSON in URL-safe base64: any text (quotes, ``${``) passes Hydra's override grammar and its
    interpolation unchanged."""
    import base64
    import json

    text = base64.urlsafe_b64encode(json.dumps(dict(ctx), separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{TRIAL_KEY}={text}"


def job_value(ret: Any) -> Any:
    """A launched job's return value, or the exception its task raised (Hydra's
    ``JobReturn.return_value`` re-raises it, after an "Error executing job" line on stderr that
    the sweep's own warning says better)."""
    import contextlib
    import io

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return ret.return_value
    except Exception as exc:  # noqa: BLE001 - the task's own exception, as the official sweeper reads it
        return exc


_CURRENT: contextvars.ContextVar[UserTrial | None] = contextvars.ContextVar("imbsweep_trial", default=None)


class TrialTask:
    """The app's task function as a sweep's launcher runs it: a job the sweeper launched
    (``hydra.sweeper.trial`` set) is recorded as a trial; anything else calls the function as
    it is. Picklable when the function is (a launcher may run it in another process)."""

    def __init__(self, task_function: Any) -> None:
        self.task_function = task_function

    def __call__(self, cfg: DictConfig) -> Any:
        ctx = trial_context()
        if ctx is None:
            return self.task_function(cfg)
        if is_own_app(self.task_function) and "replay" not in ctx:
            from ._task import run_trial

            return run_trial(cfg, ctx)
        return run_user_trial(self.task_function, cfg, ctx)


def trial_context() -> dict[str, Any] | None:
    """This job's ``hydra.sweeper.trial``, None outside a sweep's job."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    import base64
    import json

    text = HydraConfig.get().sweeper.get("trial")
    if not isinstance(text, str) or not text:
        return None
    ctx = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))  # (trial_override's)
    return dict(ctx) if isinstance(ctx, Mapping) and ctx else None


def current() -> UserTrial | None:
    """The trial whose task function runs now in this process (None outside one)."""
    return _CURRENT.get()


def as_values(value: Any, n: int) -> list[float]:
    """The task function's return value as ``n`` floats, or the official sweeper's errors."""
    if n == 1:
        try:
            return [float(value)]
        except (TypeError, ValueError):
            raise ValueError(f"Return value must be float-castable. Got '{value}'.") from None
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"Return value must be a list or tuple of float-castable values. Got '{value}'.") from None
    if len(values) != n:
        raise ValueError(f"The number of the values and the number of the objectives are mismatched. "
                         f"Expect {n}, but actually {len(values)}.")
    return values


class UserTrial:
    """One job of an app's sweep while it runs: its MLflow run, and its Optuna trial (None for
    a re-run of ``compare --reseed``)."""

    def __init__(self, trial: Any, client: Any, run_id: str, objectives: Sequence[tuple[str, str]]) -> None:
        self.trial, self.client, self.run_id, self.objectives = trial, client, run_id, list(objectives)
        self.last_step: int | None = None  # the last step reported: the objectives have a curve

    def report(self, step: int, value: float | Sequence[float]) -> None:
        """``value`` (one per objective) logged at ``step`` under the objective's name; with
        one objective, also reported to Optuna, and :class:`~imbsweep.TrialPruned` raised when
        the pruner stops the trial."""
        import time

        from mlflow.entities import Metric

        from .._signals import signals_held
        from ._task import TrialPruned

        values = as_values(value, len(self.objectives))
        self.last_step = int(step) if self.last_step is None else max(self.last_step, int(step))
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(name, v, now, int(step)) for (name, _), v
                                                    in zip(self.objectives, values, strict=True) if math.isfinite(v)])
        if self.trial is None or len(values) != 1:
            return
        with signals_held():  # Ctrl-C lands after the storage write, not inside its transaction
            self.trial.report(values[0], step=int(step))
        if self.trial.should_prune():
            raise TrialPruned(f"pruned at step {step} ({self.objectives[0][0]}={values[0]:.6g})")


# long: the hold around the outcome must see every way out of the trial, as _task.run_trial
def run_user_trial(task_function: Any, cfg: DictConfig, ctx: Mapping[str, Any]) -> float | list[float]:
    """Run the app's task function as the trial ``ctx`` names (see the module docstring).

    The run is created and named on the trial under held signals (both, or neither); from
    then on, whatever happens (an exception in its description, in the task, a value that is
    not a finite number, Ctrl-C), the run ends, with the state and reason the trial gets."""
    from hydra.core.hydra_config import HydraConfig

    from .._client import make_client
    from .._signals import signals_held
    from ._userrun import UserRun

    hc = HydraConfig.get()
    objectives = [(str(n), str(d)) for n, d in ctx["objectives"]]
    uri = _tracking_uri(hc, ctx)
    trial = _optuna_trial(hc, ctx)
    record = UserRun(make_client(uri), uri)
    status, state, reason, values = "FAILED", FAILED, "", []
    job: UserTrial | None = None
    cut: Exception | None = None  # a StorageError: the MLflow store refused the trial's writes
    heartbeat: Any = _NoThread()
    try:
        with signals_held():  # the run exists and its trial names it, or neither
            from ._app import source_dir

            record.create(hc, ctx, source_dir(task_function))
            if trial is not None:
                trial.set_user_attr(ATTR_RUN_ID, record.run_id)
                if ctx.get("arm"):
                    trial.set_user_attr(ATTR_ARM, str(ctx["arm"]))
        heartbeat = _heartbeat(trial)
        record.describe(cfg, hc)
        record.activate(str(ctx["experiment_id"]))
        job = UserTrial(trial, record.client, record.run_id, objectives)
        token = _CURRENT.set(job)
        try:
            returned = task_function(cfg)
        finally:
            _CURRENT.reset(token)
        values = as_values(returned, len(objectives))
        if not all(math.isfinite(v) for v in values):
            values, shown = [], values
            raise ValueError(f"Return value must be finite. Got '{shown[0] if len(shown) == 1 else shown}'.")
        status, state = "FINISHED", COMPLETE
    except KeyboardInterrupt:
        status, state, reason = "KILLED", KILLED, "interrupted (Ctrl-C)"
        raise
    except BaseException as exc:
        import optuna

        if isinstance(exc, optuna.TrialPruned):
            status, state, reason = "FINISHED", PRUNED, str(exc) or "pruned"
        elif _refused_by_mlflow(exc):  # the platform's failure, not the trial's: re-queued, uncounted
            state, cut = OUTCOME_CUT, _cut(exc, uri, ctx)
            reason = str(cut)
            raise cut from exc
        else:
            reason = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        with signals_held():  # Optuna and MLflow agree on how the trial ended, whatever the moment of Ctrl-C
            heartbeat.join()
            if record.run_id:
                try:
                    record.end(objectives, values, status, FAILED if state == OUTCOME_CUT else state, reason,
                               job.last_step if job is not None else None)
                except Exception as exc:
                    if not _refused_by_mlflow(exc):
                        raise
                    if state != OUTCOME_CUT:  # (its run is ended by the next command, which re-queues it)
                        state, cut = OUTCOME_CUT, _cut(exc, uri, ctx)
                        reason = str(cut)
            if trial is not None and record.run_id and state != KILLED:
                outcome: dict[str, Any] = {"state": "fail" if state == FAILED else state}
                if state == COMPLETE:
                    outcome["values"] = values
                    _posthoc_twins(record.client, record.run_id, trial, ctx, objectives)
                elif reason:
                    outcome["reason"] = reason[:2000]
                trial.set_user_attr(ATTR_OUTCOME, outcome)
            if cut is not None and state == OUTCOME_CUT and sys.exc_info()[1] is None:
                raise cut  # (the run's end was refused: the values are not returned)
    log.info("trial %s: %s", ctx.get("number", "-"),
             ", ".join(f"{n}={v:.6g}" for (n, _), v in zip(objectives, values, strict=True)))
    return values[0] if len(values) == 1 else values


def _cut(exc: BaseException, uri: str, ctx: Mapping[str, Any]) -> Exception:
    """The ``StorageError`` a trial the MLflow store cut ends with (one that is one already, as it is)."""
    from .._client import store_refused
    from ..errors import StorageError

    if isinstance(exc, StorageError):
        return exc
    return store_refused(uri, f"a write of trial {ctx.get('number', '-')}", exc)


def _refused_by_mlflow(exc: BaseException) -> bool:
    """Whether the MLflow store refused a write of the trial (the app's own MLflow call or
    ours): an ``MlflowException`` or database error that is not a refusal of the request itself
    (``_client.store_failure``; an ``OSError`` of the app's own is the app's)."""
    from sqlalchemy.exc import DBAPIError

    from .._client import store_failure
    from ..errors import StorageError

    if isinstance(exc, StorageError | DBAPIError):
        return True
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and store_failure(exc)


def _tracking_uri(hc: Any, ctx: Mapping[str, Any]) -> str:
    """The sweep's MLflow store, as the sweeper found it: named in ``ctx`` (a local store; a URI
    with credentials never travels there), else ``hydra.sweeper.tracking_uri`` or
    ``$MLFLOW_TRACKING_URI`` (a re-run's: the variable ``compare`` sets first), else the local
    store of the state folder."""
    import os

    from .._paths import local_tracking_uri

    if ctx.get("tracking_uri"):
        return str(ctx["tracking_uri"])
    setting = OmegaConf.select(hc, "sweeper.tracking_uri", default=None)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    uri = (env or setting) if ctx.get("replay") else (setting or env)
    return str(uri) if uri else local_tracking_uri(Path(str(ctx["state"])))


def _optuna_trial(hc: Any, ctx: Mapping[str, Any]) -> Any:
    """The Optuna trial the sweeper asked for (its study with the sweep's pruner), None for a
    job without one."""
    if "trial_id" not in ctx:
        return None
    import optuna

    from ._settings import Settings
    from ._study import make_pruner, open_storage

    sweeper = hc.sweeper
    settings = Settings.of({k: sweeper[k] for k in ("storage", "heartbeat_interval", "pruner") if k in sweeper})
    storage = open_storage(resolved_storage(settings.storage, str(hc.runtime.cwd)), Path(str(ctx["state"])),
                           settings.heartbeat_interval, reuse=True)
    study = optuna.load_study(study_name=str(ctx.get("optuna_study") or ctx["study"]), storage=storage,
                              pruner=make_pruner(settings.pruner))
    return optuna.trial.Trial(study, int(ctx["trial_id"]))


def resolved_storage(url: str | None, cwd: str) -> str | None:
    """A storage URL whose file path is relative (``sqlite:///study.db``, ``study.log``) made
    absolute against the launch folder ``cwd``: a job may run in another working folder
    (``hydra.job.chdir=true``)."""
    from ..names import JOURNAL_SUFFIXES

    if not url:
        return url
    if url.endswith(JOURNAL_SUFFIXES) and "://" not in url:
        return str(Path(cwd, url).expanduser()) if not Path(url).expanduser().is_absolute() else url
    prefix = "sqlite:///"
    if url.startswith(prefix) and url[len(prefix):] not in ("", ":memory:") and not url[len(prefix):].startswith("/"):
        return prefix + str(Path(cwd, url[len(prefix):]))
    return url


def _heartbeat(trial: Any) -> Any:
    """Optuna's heartbeat thread for the trial (a no-op without heartbeats, or without a trial)."""
    if trial is None:
        return _NoThread()
    from optuna.storages._heartbeat import get_heartbeat_thread

    thread = get_heartbeat_thread(trial._trial_id, trial.storage)
    thread.start()
    return thread


class _NoThread:
    def join(self) -> None:
        return None


def _posthoc_twins(client: Any, run_id: str, trial: Any, ctx: Mapping[str, Any],
                   objectives: Sequence[tuple[str, str]]) -> None:
    """For a source arm of post-hoc arms: the objective's post-hoc twins the task logged
    (``<objective>_posthoc``, ``<objective>_taunorm``) on the trial, where the arms read them."""
    kinds = ctx.get("posthoc") or []
    if not kinds:
        return
    logged = client.get_run(run_id).data.metrics
    for kind in kinds:
        twin = logged.get(f"{objectives[0][0]}_{kind}")
        if twin is not None:
            trial.set_user_attr(posthoc_attr(str(kind)), float(twin))
