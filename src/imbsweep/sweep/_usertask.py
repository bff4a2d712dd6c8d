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

import contextlib
import contextvars
import getpass
import logging
import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
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
    NOTE,
    PARENT_RUN,
    PRUNED,
    RUN_NAME,
    RUNNING,
    SOURCE_NAME,
    SOURCE_TYPE,
    TAG_ARM,
    TAG_CHOICE,
    TAG_OVERRIDES,
    TAG_PRUNE_REASON,
    TAG_REASON,
    TAG_STATE,
    TAG_STUDY,
    TAG_TRIAL,
    TAG_TRICK,
    USER,
    posthoc_attr,
)
from ._app import is_own_app

log = logging.getLogger(__name__)
TRIAL_KEY = "hydra.sweeper.trial"  # where a job finds its trial (_usertask.trial_context)


def trial_override(ctx: Mapping[str, Any]) -> str:
    """``hydra.sweeper.trial='<ctx as JSON>'``: a hydra override, so the app's own config (its
    ``.hydra/config.yaml``, ``overrides.yaml``, ``override_dirname``) never holds it."""
    import json

    from ._space import override

    return override(TRIAL_KEY, json.dumps(dict(ctx), separators=(",", ":")))


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
    import json

    text = HydraConfig.get().sweeper.get("trial")
    if not isinstance(text, str) or not text:
        return None
    ctx = json.loads(text)  # (written by _runner.trial_override)
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
        self.last_step = int(step)
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(name, v, now, int(step)) for (name, _), v
                                                    in zip(self.objectives, values, strict=True) if math.isfinite(v)])
        if self.trial is None or len(values) != 1:
            return
        with signals_held():  # Ctrl-C lands after the storage write, not inside its transaction
            self.trial.report(values[0], step=int(step))
        if self.trial.should_prune():
            raise TrialPruned(f"pruned at step {step} ({self.objectives[0][0]}={values[0]:.6g})")


def run_user_trial(task_function: Any, cfg: DictConfig, ctx: Mapping[str, Any]) -> float | list[float]:
    """Run the app's task function as the trial ``ctx`` names (see the module docstring)."""
    from hydra.core.hydra_config import HydraConfig

    from .._client import make_client
    from .._signals import signals_held

    hc = HydraConfig.get()
    objectives = [(str(n), str(d)) for n, d in ctx["objectives"]]
    uri = str(ctx.get("tracking_uri") or _tracking_uri(hc, ctx))
    client = make_client(uri)
    trial = _optuna_trial(hc, ctx)
    run_id = _create_run(client, cfg, hc, ctx)
    if trial is not None:
        trial.set_user_attr(ATTR_RUN_ID, run_id)
        if ctx.get("arm"):
            trial.set_user_attr(ATTR_ARM, str(ctx["arm"]))
    heartbeat = _heartbeat(trial)
    status, state, reason, values = "FAILED", FAILED, "", []
    job: UserTrial | None = None
    active = _active_run(uri, run_id)
    try:
        active.__enter__()
        job = UserTrial(trial, client, run_id, objectives)
        token = _CURRENT.set(job)
        try:
            returned = task_function(cfg)
        finally:
            _CURRENT.reset(token)
        values = as_values(returned, len(objectives))
        status, state = "FINISHED", COMPLETE
    except KeyboardInterrupt:
        status, state, reason = "KILLED", KILLED, "interrupted (Ctrl-C)"
        raise
    except BaseException as exc:
        import optuna

        if isinstance(exc, optuna.TrialPruned):
            status, state, reason = "FINISHED", PRUNED, str(exc) or "pruned"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        heartbeat.join()
        with signals_held():  # Optuna and MLflow agree on how the trial ended, whatever the moment of Ctrl-C
            try:
                _end_run(client, run_id, objectives, values, status, state, reason,
                         job.last_step if job is not None else None)
            finally:
                active.__exit__(None, None, None)
            if trial is not None:
                outcome: dict[str, Any] = {"state": "fail" if state in (FAILED, KILLED) else state}
                if state == COMPLETE:
                    outcome["values"] = values
                    _posthoc_twins(client, run_id, trial, ctx, objectives)
                elif reason:
                    outcome["reason"] = reason[:2000]
                if state != KILLED:
                    trial.set_user_attr(ATTR_OUTCOME, outcome)
    log.info("trial %s: %s", ctx.get("number", "-"),
             ", ".join(f"{n}={v:.6g}" for (n, _), v in zip(objectives, values, strict=True)))
    return values[0] if len(values) == 1 else values


def _tracking_uri(hc: Any, ctx: Mapping[str, Any]) -> str:
    """The sweep's MLflow store, as the sweeper found it (credentials never travel in ``ctx``)."""
    import os

    from .._paths import local_tracking_uri

    uri = OmegaConf.select(hc, "sweeper.tracking_uri", default=None) or os.environ.get("MLFLOW_TRACKING_URI")
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


def config_container(cfg: DictConfig) -> dict[str, Any]:
    """The app's config as plain values, resolved where it resolves, credentials hidden."""
    from .._config import redacted_container

    try:
        return redacted_container(cfg)
    except Exception:  # noqa: BLE001 - an interpolation that resolves only inside the app: as written
        container = OmegaConf.to_container(cfg, resolve=False)
        assert isinstance(container, dict)
        return {str(k): v for k, v in container.items()}


def _create_run(client: Any, cfg: DictConfig, hc: Any, ctx: Mapping[str, Any]) -> str:
    """The trial's MLflow run: tags, the flattened config as params, ``config.yaml`` and
    ``overrides.yaml`` as artifacts (what ``export`` and ``compare --reseed`` read back)."""
    import yaml
    from mlflow.entities import Param, RunTag

    from .._config import flatten, to_yaml
    from .._paths import git_commit

    arm = ctx.get("arm")
    container = config_container(cfg)
    tags = {TAG_STUDY: str(ctx["study"]), TAG_STATE: RUNNING, TAG_TRICK: str(arm or ctx["study"]),
            USER: getpass.getuser(), SOURCE_TYPE: "LOCAL", SOURCE_NAME: str(hc.job.name),
            PARENT_RUN: str(ctx["parent_run_id"]),
            **{TAG_CHOICE + str(g): str(o) for g, o in hc.runtime.choices.items()
               if o is not None and not str(g).startswith("hydra/")}}
    if "number" in ctx:
        tags[TAG_TRIAL] = str(ctx["number"])
    if arm:
        tags[TAG_ARM] = str(arm)
    tags.update({str(k): str(v) for k, v in (ctx.get("tags") or {}).items()})
    sha, _ = git_commit()
    if sha:
        from ..names import GIT_COMMIT

        tags[GIT_COMMIT] = sha
    name = ctx.get("run_name") or f"{arm or ctx['study']} trial-{ctx.get('number')}"
    run = client.create_run(str(ctx["experiment_id"]), run_name=str(name), tags=tags)
    run_id = str(run.info.run_id)
    params = [Param(k[:250], v[:6000]) for k, v in flatten(container)]
    for i in range(0, len(params), 100):  # MLflow's limit per batch
        client.log_batch(run_id, params=params[i:i + 100])
    overrides = [str(o) for o in hc.overrides.task]
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "config.yaml").write_text(to_yaml(container))
        Path(tmp, "overrides.yaml").write_text(yaml.safe_dump(overrides, default_flow_style=False))
        client.log_artifacts(run_id, tmp)
    client.log_batch(run_id, tags=[RunTag(TAG_OVERRIDES, " ".join(overrides)[:5000])])
    return run_id


@contextlib.contextmanager
def _active_run(uri: str, run_id: str) -> Iterator[None]:
    """``run_id`` is MLflow's active run in this process meanwhile (the fluent API's
    ``mlflow.log_metric`` lands in it), the fluent API's tracking URI the trial's store; runs the
    task started and left open are ended after it. The run itself stays RUNNING: :func:`_end_run`
    ends it."""
    import os

    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")  # (set_tracking_uri sets it too, for subprocesses)
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.start_run(run_id=run_id)
        yield
    finally:
        try:
            while (active := mlflow.active_run()) is not None and active.info.run_id != run_id:
                mlflow.end_run()
        finally:
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # as it was: unset, or the variable's value
            if before is not None:
                os.environ["MLFLOW_TRACKING_URI"] = before


def _end_run(client: Any, run_id: str, objectives: Sequence[tuple[str, str]], values: Sequence[float],
             status: str, state: str, reason: str, last_step: int | None = None) -> None:
    """The returned values under the objectives' names (where ``imbsweep.report`` drew their
    curve, under ``selected_key``: ``val/selected/balanced_acc``, as imbsweep's app logs the value
    of its selected epoch; readers take it as the run's value), the state tags, the run's end."""
    import time

    from mlflow.entities import Metric, RunTag

    from ..names import selected_key

    now = int(time.time() * 1000)
    step = 0 if last_step is None else last_step
    metrics = [Metric(n if last_step is None else selected_key(n), float(v), now, step)
               for (n, _), v in zip(objectives, values, strict=False) if math.isfinite(v)]
    tags = {TAG_STATE: state}
    if reason:
        tags[TAG_PRUNE_REASON if state == PRUNED else TAG_REASON] = reason[:5000]
        tags[NOTE] = f"{state}: {reason}"[:5000]
    if state != COMPLETE:
        tags[RUN_NAME] = f"{client.get_run(run_id).info.run_name} {state}"
    try:
        client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
    finally:
        import mlflow

        active = mlflow.active_run()
        if active is not None and active.info.run_id == run_id:
            mlflow.end_run(status)  # (with the fluent API's tracking URI still the trial's)
        else:
            client.set_terminated(run_id, status=status)


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
