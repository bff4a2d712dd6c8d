"""The sweep loop: ask Optuna, launch one Hydra job per trial, tell Optuna, record in MLflow.

The study's target ``n_trials`` counts every finished trial across restarts (complete,
pruned and failed, but not those re-queued after an interruption), so running the same
command again resumes towards the target instead of adding ``n_trials`` more.

A tournament (``hydra.sweeper.arms``) is one Optuna study per arm, named ``<study>/<arm>``:
each arm's sampler and pruner see only its own trials, so one arm's results never steer or
prune another's. Every arm gets exactly ``trials_per_arm`` finished trials; a free worker
takes the arm with the fewest finished + running trials (declaration order breaks ties), so
a sweep stopped at any moment is balanced to within one trial per arm. All arms share one
MLflow experiment and parent run, and one budget lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import subprocess
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from .._paths import journal_path, state_of
from .._signals import signals_held
from ..errors import ImbsweepError, StorageError
from ..names import (
    ATTR_FAIL_REASON,
    ATTR_REQUEUED,
    JOURNAL_SUFFIXES,
)
from ._app import App, is_own_app
from ._arms import Arm, enqueue_baseline
from ._checks import check_kind, drop_new_studies, preflight
from ._counts import counts
from ._launch import JobLost, LaunchFailed, make_jobs, runs_here
from ._procs import WORKER_ENV, join, pin_gpu, reap, share_gpus, start_workers, stop, torch_threads, worker_ready
from ._settings import Settings
from ._space import RANGE_STOPS, SearchSpace, custom_space, override, range_note, search_space_params
from ._study import make_pruner, make_sampler, open_arm, open_storage
from ._summary import write_study_files
from ._tournament import Tournament, plan
from ._usertask import job_value, trial_override
from ._workers import budget_lock, finish, mark_running, recover_dead, requeue

log = logging.getLogger(__name__)


class SweepStopped(ImbsweepError):
    """The sweep stopped early (too many failures); the study is kept and resumable."""

    exit_code = 1


class Sweep:
    """One worker's ask/run/tell loop over a :class:`~._tournament.Tournament` (see the module
    docstring): made from the sweeper's settings, checked (``_checks.preflight``) before any
    study is opened, then :meth:`run`."""

    def __init__(self, conf: Mapping[str, Any], config: DictConfig, launcher: Any,
                 arguments: Sequence[str], config_loader: Any = None, task_function: Any = None) -> None:
        self.config, self.launcher = config, launcher
        RANGE_STOPS.clear()  # (what range_note says is this sweep's)
        settings = Settings.of(conf)
        settings.validate()
        choices = OmegaConf.select(config, "hydra.runtime.choices", default={}) or {}
        task = task_function if task_function is not None else _task_of(launcher)
        own = is_own_app(task)
        study_name = str(settings.study_name or choices.get("sweep")
                         or ("imbsweep" if own else OmegaConf.select(config, "hydra.job.name", default=None))
                         or "imbsweep")
        self.app = app = App.of(task, config, settings, study_name)
        # the official plugin's deprecated search_space, where params is not given
        self.settings = settings = dataclasses.replace(settings, params=search_space_params(
            settings.params, settings.search_space))
        self.extend = custom_space(settings.custom_search_space)
        self.worker = os.environ.get(WORKER_ENV)  # set in the processes this sweep starts
        self.n_jobs, self.gpus = share_gpus(settings.n_jobs, settings.workers_per_gpu,
                                            bool(self.worker) or not runs_here(launcher))
        self.t = t = plan(settings, config, arguments, config_loader, app, study_name)
        if self.n_jobs > t.n_trials:  # (a worker more than the budget would only start and stop)
            log.warning("hydra.sweeper.n_jobs=%d for %d trials: %d worker(s)", self.n_jobs, t.n_trials, t.n_trials)
            self.n_jobs, self.gpus = t.n_trials, self.gpus[:t.n_trials]
        if settings.reproducible and self.n_jobs > len(t.arms):  # (more would only wait)
            log.warning("hydra.sweeper.reproducible runs one trial of each arm at a time: n_jobs %d lowered to %d",
                        self.n_jobs, len(t.arms))
            self.n_jobs, self.gpus = len(t.arms), self.gpus[:len(t.arms)]
        for arm in t.arms:  # a bad sampler setting is an error before any storage is touched
            self._sampler(0, arm.space)
        note = range_note()
        if note and not os.environ.get(WORKER_ENV):  # (once: not again in each worker)
            log.warning(note)
        self.state = state_of(app.env)
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        # the space against the config and the data, the stores: before any study is opened
        preflight(t, app, settings, config, config_loader, self.state, self.sweep_dir, self.worker)
        self.storage = open_storage(settings.storage, self.state, settings.heartbeat_interval)
        self.pruner = make_pruner(settings.pruner)
        self.job_idx = 0
        self.jobs = make_jobs(launcher, config, app.own)  # (imbsweep's app: its composition cached)
        self.threads = torch_threads(self.n_jobs, config) if app.own and runs_here(launcher) else None
        url = settings.storage
        self.journal = (Path(url) if url else journal_path(self.state)) \
            if not url or str(url).endswith(JOURNAL_SUFFIXES) else None
        self.last_error = "?"

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> optuna.Study | list[optuna.Study]:
        from ._mlflow import ParentRun  # imports mlflow
        from ._progress import SweepProgress

        directions: list[Any] = [d for _, d in self.t.objectives]
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        data = None
        if self.app.own:
            from ..data import study_data

            data = study_data(self.config)  # built (and cached) once here; a study stays on one dataset
        parent: ParentRun | None = None
        try:
            with self._lock():
                # under the lock: workers starting together find one parent run, not one each
                existed = check_kind(self.t, self.storage)
                try:
                    for arm in self.t.arms:
                        arm.study = open_arm(arm, self.t.study_name, self.t.objectives, self.storage, self.pruner,
                                             directions, self._sampler)
                        enqueue_baseline(arm, self.t.baseline)
                    parent = ParentRun(self.app.env, self.t.study_name, self.settings.raw, owner=not self.worker,
                                       baseline_arm=self.t.baseline_arm, posthoc_arms=self.t.posthoc_arms,
                                       posthoc_kinds=self.t.posthoc_kinds, data=data, app=self.app)
                    if not self.worker:  # runs a store refused to end when their trials were re-queued
                        parent.end_orphans(self.t.arms)
                except BaseException:
                    if parent is None:
                        drop_new_studies(self.storage, self.t.arms, existed)  # no empty study left behind
                    raise
            studies = [a.study for a in self.t.arms]
            progress = SweepProgress(self.t.study_name, self.t.n_trials, self.t.objectives, show=not self.worker)
            log.info("study %s: %d/%d trials finished%s; storage %s", self.t.study_name, counts(studies)["finished"],
                     self.t.n_trials, f" ({len(self.t.arms)} arms)" if self.t.has_arms else "",
                     _describe(self.settings.storage, self.state))
        except BaseException as exc:  # (a Ctrl-C in the first seconds: the parent run is not left RUNNING)
            if parent is not None:
                parent.__exit__(type(exc), exc, exc.__traceback__)
            raise
        workers: list[subprocess.Popen[bytes]] = []
        stopping = False
        try:
            with parent, progress:
                if self.worker:
                    worker_ready()
                workers = self._start_workers()
                progress.update(studies)
                while True:
                    reap(workers)
                    claimed, trial = self._claim(parent)
                    if trial is None:
                        if all(counts(a.study)["finished"] >= a.budget for a in self.t.arms):
                            break
                        parent.flush_progress()  # (no trial of this process's own meanwhile)
                        time.sleep(0.5)  # the rest of the budget runs elsewhere; watch it
                    else:
                        assert claimed is not None
                        self._one_trial(claimed, trial, parent)
                        parent.log_progress(studies)
                        check_failures(self.t, studies, self.settings.max_failure_rate, self.last_error)
                    progress.update(studies)
                join(workers)
                parent.flush_progress()
        except BaseException:
            stopping = True
            stop(workers)
            raise
        finally:
            if not self.worker:
                write_study_files(self.t, self.sweep_dir, parent, studies, stopping)
        if not self.worker:
            from ._summary import print_summary

            t = self.t
            print_summary(t.study_name, [(a.name, a.study) for a in t.arms], t.objectives, t.baseline_arm,
                          t.posthoc_arms, t.posthoc_kinds, self.app.own, self.app.seed_key)
        return studies if self.t.has_arms else studies[0]

    def _lock(self) -> Any:
        """The study's budget lock (``_workers.budget_lock``)."""
        return budget_lock(self.storage, self.t.study_name, self.journal)

    def _claim(self, parent: Any) -> tuple[Arm | None, optuna.Trial | None]:
        """Under the study's budget lock: recover dead workers' trials, then ask for a trial
        of the arm with the fewest finished + running trials, if one is below its budget.
        ``reproducible``: only of an arm with no trial running and at most one trial more than
        the least served has (so at most two ahead once it runs; else none: the caller waits),
        each ask seeded by its number."""
        reproducible = self.settings.reproducible
        with self._lock():
            below: list[tuple[int, int, Arm]] = []
            for a in self.t.arms:
                parent.end_dead_runs(recover_dead(a.study), a.name)
                c = counts(a.study)
                if c["finished"] + c["running"] < a.budget:
                    below.append((c["finished"] + c["running"], c["running"], a))
            if reproducible and below:
                least = min(n for n, _, _ in below)
                below = [u for u in below if u[1] == 0 and u[0] <= least + 1]
            if not below:
                return None, None
            _, _, arm = min(below, key=lambda u: u[0])  # the first of the least served, in the file's order
            if not arm.seeded or reproducible:  # this process's own seed stream, or this ask's: see _sampler
                # every ask adds a trial or takes a waiting one: the non-waiting count is unique; a
                # re-queued trial's failed twin is left out, so that the asks after its re-run
                # get the seeds they get in a run that was never interrupted
                asked = [t for t in arm.study.get_trials(deepcopy=False) if t.state != optuna.trial.TrialState.WAITING
                         and not t.user_attrs.get(ATTR_REQUEUED)]
                arm.study.sampler = self._sampler(len(asked), arm.space)
                arm.seeded = True
            # Ctrl-C lands after the trial knows its process: a RUNNING trial without one
            # could never be recovered
            with signals_held(), warnings.catch_warnings():  # we run the heartbeat thread ourselves (see _task)
                warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
                trial = arm.study.ask()
                mark_running(trial)
            return arm, trial

    def _start_workers(self) -> list[subprocess.Popen[bytes]]:
        """``n_jobs - 1`` more processes running this same command as plain workers."""
        if self.worker or self.n_jobs == 1:
            return []
        if self.app.program is None:
            log.warning("hydra.sweeper.n_jobs=%d: this sweep did not start from a command line that can be run "
                        "again (it runs inside another program), so no worker processes are started and its "
                        "trials run one after another in this process", self.n_jobs)
            return []
        pin_gpu(self.gpus[0])  # this process's own trials: before its first
        return start_workers(self.app.program, self.app.argv, self.n_jobs, self.sweep_dir, self.threads, self.gpus)

    def _sampler(self, n_existing: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
        """The configured sampler; its seed is offset by the trials the study has (waiting ones
        aside) when this process first asks for one, under the budget lock (:meth:`_claim`): every
        ask adds one to that count, so a fresh study
        run by one process is reproducible, a resumed one does not replay its draws, and
        processes started together (workers, or the same command on several machines) each
        draw their own stream: under the lock no two of them see the same count. Arms start
        from the same seed: arms with the same free parameters draw the same start-up points
        (common random numbers), until each arm's own results steer its sampler. With
        ``reproducible`` a sampler is made for every ask: its draws depend on the trial's number
        only, not on which process asks."""
        spec = dict(self.settings.sampler)
        if spec.get("seed") is not None:
            spec["seed"] = int(spec["seed"]) + n_existing
        return make_sampler(spec, space)

    def _one_trial(self, arm: Arm, trial: optuna.Trial, parent: Any) -> None:
        study = arm.study
        sampled = arm.space.sample(trial)
        extra: list[str] = []
        if self.extend is not None:  # hydra.sweeper.custom_search_space: what it suggests on the trial
            self.extend(self.config, trial)
            extra = [override(k, v) for k, v in trial.params.items() if k not in sampled]
        ctx: dict[str, Any] = {"study": self.t.study_name, "number": trial.number, "trial_id": trial._trial_id,
                               "experiment_id": parent.experiment_id, "parent_run_id": parent.run_id,
                               "state": str(self.state), "objectives": [list(o) for o in self.t.objectives]}
        if not self.app.own:  # the store as this process reached it: a job may run in another folder (chdir)
            from .._stores import redact
            from ._usertask import resolved_storage

            uri = str(parent.uri)
            if redact(uri) == uri:  # (a URI with credentials never travels in a job's config)
                ctx["tracking_uri"] = resolved_storage(uri, os.getcwd())
        if arm.name is not None:
            ctx.update({"optuna_study": arm.study_name, "arm": arm.name})
            kinds = sorted({self.t.posthoc_kinds[a] for a, src in self.t.posthoc_arms.items() if src == arm.name})
            if kinds:
                ctx["posthoc"] = kinds  # the trial keeps its post-hoc values for the post-hoc arms
        overrides = [*arm.space.overrides(sampled), *extra, trial_override(ctx)]
        if self.threads and "trainer.num_threads" not in arm.space.names():
            overrides.append(f"trainer.num_threads={self.threads}")
        try:
            ret = self.jobs.run(overrides, self.job_idx)
        except JobLost as exc:
            self.job_idx += 1
            self.last_error = lose(arm, trial, parent, str(exc), self._lock) or self.last_error
            return
        except (KeyboardInterrupt, LaunchFailed) as exc:
            # a run that ended before the interrupt keeps its outcome; else the study stays
            # resumable: this trial fails uncounted, an identical one waits
            why = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else str(exc)
            with self._lock(), contextlib.suppress(RuntimeError):
                frozen = study._storage.get_trial(trial._trial_id)  # (RuntimeError: finished meanwhile)
                if not frozen.state.is_finished() and not finish(study, frozen):
                    requeue(study, frozen, why)
                    if isinstance(exc, LaunchFailed) or not runs_here(self.launcher):  # (its job's run: not ended)
                        parent.end_dead_runs([frozen], arm.name, f"{why}; trial re-queued"[:500])
            raise
        self.job_idx += 1
        with signals_held():  # Ctrl-C lands after Optuna knows what MLflow recorded
            self.last_error = tell(study, trial, ret) or self.last_error


def check_failures(t: Tournament, studies: Sequence[optuna.Study], rate: float, last_error: str) -> None:
    """Stop the sweep (the study kept, resumable) once more than ``rate`` of its budget failed."""
    c = counts(studies)
    if c["fail"] > rate * t.n_trials:
        raise SweepStopped(f"study {t.study_name!r} stopped: {c['fail']} of {t.n_trials} trials failed (more than "
                           f"hydra.sweeper.max_failure_rate={rate}); last error: {last_error}")


def lose(arm: Arm, trial: optuna.Trial, parent: Any, why: str, lock: Callable[[], Any]) -> str | None:
    """The launcher lost the trial's job (killed, out of memory, its node gone): re-queued,
    not counted (``_workers.requeue``: the same parameters lost 3 times fail for good). Under
    the budget lock (``lock()``), as another worker's recovery of a trial whose heartbeat
    stopped. Returns why it failed for good, None otherwise."""
    study = arm.study
    with lock(), signals_held():
        try:
            frozen = study._storage.get_trial(trial._trial_id)
            if frozen.state.is_finished() or finish(study, frozen):  # recovered meanwhile; an outcome recorded
                return None
            reason = f"its job was lost: {why}"
            again = requeue(study, frozen, reason, lost=True)
        except RuntimeError:  # finished meanwhile by another worker
            return None
        parent.end_dead_runs([frozen], arm.name, ("its job was lost; trial re-queued" if again else reason)[:500])
    if again:
        log.warning("trial %d of %s: its job was lost (%s); re-queued", trial.number, study.study_name, why[:300])
        return None
    return reason


def tell(study: optuna.Study, trial: optuna.Trial, ret: Any) -> str | None:
    """Tell Optuna what the trial's job returned (values, pruned, or failed with its reason);
    returns the failure's reason, None otherwise. A store's failure (``StorageError``) is the
    sweep's, not the trial's: it is raised."""
    from hydra.core.utils import JobStatus

    value = job_value(ret)
    if isinstance(value, StorageError):  # the store, not the trial: stop, the next run recovers it
        raise value
    if study._storage.get_trial(trial._trial_id).state.is_finished():
        log.warning("trial %d was failed and re-queued by another worker (stale heartbeat) "
                    "before it finished; its result is dropped", trial.number)
        return None
    if ret.status == JobStatus.COMPLETED:
        values = value if isinstance(value, list | tuple) else [value]
        try:
            study.tell(trial, [float(v) for v in values])
            return None
        except (TypeError, ValueError) as exc:
            value = exc
    if isinstance(value, optuna.TrialPruned):
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return None
    reason = f"{type(value).__name__}: {value}"
    trial.set_user_attr(ATTR_FAIL_REASON, reason[:2000])
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    log.warning("trial %d of %s failed: %s", trial.number, study.study_name, reason)
    return reason


def _task_of(launcher: Any) -> Any:
    """The app's task function the launcher runs (unwrapped from ``_usertask.TrialTask``)."""
    task = getattr(launcher, "task_function", None)
    return getattr(task, "task_function", task)


def _describe(storage: Any, state: Path) -> str:
    from .._stores import redact

    return redact(str(storage)) if storage else f"{journal_path(state)} (journal file)"


def run_sweep(conf: Mapping[str, Any], config: DictConfig, launcher: Any, arguments: Sequence[str],
              config_loader: Any = None, task_function: Any = None) -> None:
    """The sweep (or, under ``$IMBSWEEP_REPLAY``, the replay of given jobs); returns nothing,
    as the official sweeper: the study is in its storage, the record in MLflow."""
    from ._replay import replay, replay_file

    path = replay_file()
    if path is not None:  # compare --reseed on a study of any app: its jobs, no search
        replay(path, launcher)
        return
    t0 = time.monotonic()
    sweep = Sweep(conf, config, launcher, arguments, config_loader, task_function)
    sweep.run()
    log.info("study %s done in %.1f s", sweep.t.study_name, time.monotonic() - t0)
