"""The task side of a sweep trial of imbsweep's own app: the job finds its Optuna trial in the
shared storage, reports the objective each epoch, and is recorded as a child run of the study's
parent run (any other app's trials: ``_usertask``).

The sweeper passes ``hydra.sweeper.trial={study:…,number:…,trial_id:…,experiment_id:…,
parent_run_id:…}`` (``_usertask.TrialTask`` reads it); the storage URL is read from Hydra's
sweeper config, never from the job's own config (it may hold credentials)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import optuna
from omegaconf import DictConfig

from .._config import objective_metrics
from .._paths import state_of
from .._signals import signals_held
from ..errors import StorageError
from ..names import (
    ATTR_ARM,
    ATTR_OUTCOME,
    ATTR_RUN_ID,
    ATTR_TRICK,
    OUTCOME_CUT,
    TAG_ARM,
    TAG_STUDY,
    TAG_TRIAL,
    posthoc_attr,
)
from ..reporting import Reporter

if TYPE_CHECKING:
    from ..records import Result

log = logging.getLogger(__name__)


class TrialPruned(optuna.TrialPruned):
    """Raised from ``on_epoch_end`` when the pruner stops a trial; MLflow records the run as
    FINISHED with ``imbsweep.state=pruned`` and the metrics of the epochs it ran."""

    imbsweep_state = "pruned"


class OptunaReporter(Reporter):
    """Reports ``objective.metric`` to the trial every epoch and stops it when pruned.

    Multi-objective studies cannot prune (Optuna has no intermediate values for them), so
    nothing is reported there.
    """

    def __init__(self, trial: optuna.Trial, metric: str | None, recorder: Any = None) -> None:
        self.trial, self.metric, self.recorder = trial, metric, recorder
        self.named = False

    def name_run(self) -> None:
        """The trial names its MLflow run (``mlflow_run_id``): once the trial is prepared, at the
        latest with the outcome."""
        if self.named or self.recorder is None or not self.recorder.run_id:
            return
        self.trial.set_user_attr(ATTR_RUN_ID, self.recorder.run_id)
        self.named = True

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if self.metric is None or self.metric not in metrics:
            return
        with signals_held():  # Ctrl-C lands after the storage write, not inside its transaction
            self.trial.report(float(metrics[self.metric]), step=epoch)
        if self.trial.should_prune():
            raise TrialPruned(f"pruned at epoch {epoch} ({self.metric}={metrics[self.metric]:.4f})")


def _outcome(result: Result, objectives: list[tuple[str, str]]) -> tuple[list[float], dict[str, Any], Exception | None]:
    """The objective values of a finished run, the outcome the trial records
    (``{"state": "complete", "values": [...]}``, or ``fail`` with its reason) and, for a
    failure, the error the job raises."""
    from ..errors import ConfigError, TrainingFailed

    error: Exception | None = None
    values = []
    if result.state == "failed":
        error = TrainingFailed(result.reason or "failed")
    else:
        for metric, _ in objectives:
            if metric not in result.metrics:
                error = ConfigError("objective.metrics", metric, "is not a metric this run logs")
                break
            values.append(float(result.metrics[metric]))
    if error is not None:
        return [], {"state": "fail", "reason": f"{type(error).__name__}: {error}"[:2000]}, error
    return values, {"state": "complete", "values": values}, None


# long: the Ctrl-C hold around the outcome must see every way out of the trial, so they are in one place
def run_trial(cfg: DictConfig, ctx: Mapping[str, Any]) -> float | list[float]:
    """Train the trial the sweeper asked for (``ctx``: ``hydra.sweeper.trial``); return its
    objective value(s)."""
    from hydra.core.hydra_config import HydraConfig
    from optuna.storages._heartbeat import get_heartbeat_thread

    from ..tracking import MlflowRun
    from ..training import fit, prepare
    from ..trick import trick_label
    from ._settings import Settings
    from ._study import make_pruner, open_storage

    # validated by the sweep that launched this job; only what a job reads (resolving all of it,
    # the search space too, took a millisecond a trial)
    sweeper = HydraConfig.get().sweeper
    settings = Settings.of({k: sweeper[k] for k in ("storage", "heartbeat_interval", "pruner") if k in sweeper})
    storage = open_storage(settings.storage, state_of(cfg), settings.heartbeat_interval, reuse=True)
    # the pruner decides inside the job, so the job needs the sweep's pruner, not Optuna's default
    # a tournament's arm is a study of its own (``<study>/<arm>``): its pruner sees only its trials
    arm = str(ctx.get("arm") or "")
    study = optuna.load_study(study_name=str(ctx.get("optuna_study") or ctx["study"]), storage=storage,
                              pruner=make_pruner(settings.pruner))
    trial = optuna.trial.Trial(study, int(ctx["trial_id"]))
    objectives = objective_metrics(cfg)
    tags = {TAG_STUDY: str(ctx["study"]), TAG_TRIAL: str(ctx["number"])}
    if arm:
        tags[TAG_ARM] = arm
    trick = trick_label(cfg)
    # From the run's last MLflow writes until its outcome is on the Optuna trial, Ctrl-C waits:
    # the sweeper (or, after a kill, the next worker's recovery) tells Optuna that outcome, so
    # Optuna and MLflow agree on how the trial ended whatever the moment of the interrupt.
    hold = signals_held()
    held = False
    outcome: dict[str, Any] | None = None
    reporter: OptunaReporter | None = None
    try:
        recorder: MlflowRun = MlflowRun(cfg, experiment_id=str(ctx["experiment_id"]),
                                        parent_run_id=str(ctx["parent_run_id"]), tags=tags,
                                        run_name=f"{arm or trick} trial-{ctx['number']}")
        reporter = OptunaReporter(trial, objectives[0][0] if len(objectives) == 1 else None, recorder)
        with recorder:
            from ..reporting import CompositeReporter

            # the run's id goes on the trial once the trial is prepared; a trial killed before
            # that is found by its tags
            trial.set_user_attr(ATTR_TRICK, trick)
            if arm:
                trial.set_user_attr(ATTR_ARM, arm)
            heartbeat = get_heartbeat_thread(trial._trial_id, storage)  # a no-op without heartbeats
            heartbeat.start()
            try:
                # built inside the run: a trial whose sampled config is bad is FAILED in MLflow too
                setup = prepare(cfg)
                reporter.name_run()
                result: Result = fit(cfg, CompositeReporter([recorder, reporter]), setup)
            except optuna.TrialPruned:
                hold.__enter__()
                held, outcome = True, {"state": "pruned"}
                raise
            except StorageError:  # the platform's failure, not the trial's: no outcome, so it is re-queued
                raise
            except Exception as exc:
                hold.__enter__()
                held, outcome = True, {"state": "fail", "reason": f"{type(exc).__name__}: {exc}"[:2000]}
                raise
            finally:
                heartbeat.join()
            hold.__enter__()
            held = True
        values, outcome, error = _outcome(result, objectives)
        kinds = ctx.get("posthoc") or []  # the post-hoc arms re-score this trial (hydra.sweeper.posthoc_arms)
        for kind in ["posthoc"] if kinds is True else kinds:
            twin = result.metrics.get(f"{objectives[0][0]}_{kind}")
            if twin is not None:
                trial.set_user_attr(posthoc_attr(str(kind)), float(twin))
    except StorageError as exc:  # a store refused the run's writes (its end included): the platform's
        # failure, not the trial's: re-queued uncounted by the next command (_workers.recover_dead)
        outcome = {"state": OUTCOME_CUT, "reason": str(exc)[:2000]}
        raise
    finally:
        try:
            if reporter is not None:
                try:
                    reporter.name_run()
                except Exception as exc:  # noqa: BLE001 - the outcome matters more; the tags find the run
                    log.warning("trial %s could not name its MLflow run: %s", ctx["number"], exc)
            if outcome is not None:
                trial.set_user_attr(ATTR_OUTCOME, outcome)
        finally:
            if held:
                hold.__exit__(None, None, None)
    if error is not None:
        raise error
    shown = ", ".join(f"{m}={v:.4f}" for (m, _), v in zip(objectives, values, strict=True))
    log.info("trial %s: %s", ctx["number"], shown)
    return values[0] if len(values) == 1 else values
