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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from .._paths import journal_path, state_of
from .._signals import signals_held
from ..errors import ConfigError, ImbsweepError, StorageError
from ..names import (
    ATTR_ARM,
    ATTR_ARM_VALUES,
    ATTR_BASELINE,
    ATTR_FAIL_REASON,
    ATTR_METRIC,
    ATTR_REQUEUED,
    ATTR_TOURNAMENT,
    JOURNAL_SUFFIXES,
)
from ._app import App, is_own_app
from ._arms import Arm, baseline_arm, baseline_params, build_arms, config_defaults, posthoc_arms
from ._checks import check_resume, drop_new_studies, preflight
from ._counts import counts
from ._launch import JobLost, LaunchFailed, make_jobs, runs_here
from ._procs import WORKER_ENV, join, pin_gpu, reap, share_gpus, start_workers, stop, torch_threads, worker_ready
from ._settings import Settings
from ._space import RANGE_STOPS, SearchSpace, custom_space, override, range_note, search_space_params
from ._study import grid_size, make_pruner, make_sampler, open_storage
from ._usertask import job_value, trial_override
from ._workers import budget_lock, finish, mark_running, recover_dead, requeue

log = logging.getLogger(__name__)


class SweepStopped(ImbsweepError):
    """The sweep stopped early (too many failures); the study is kept and resumable."""

    exit_code = 1


# long: the tournament, its loop and its recovery are one class until issue 27 item 2 splits them
class Sweep:
    """One worker's sweep over one study, or over a tournament's arms (see the module docstring)."""

    def __init__(self, conf: Mapping[str, Any], config: DictConfig, launcher: Any,
                 arguments: Sequence[str], config_loader: Any = None, task_function: Any = None) -> None:
        self.config, self.launcher, self.config_loader = config, launcher, config_loader
        self.arguments = list(arguments)
        RANGE_STOPS.clear()  # (what range_note says is this sweep's)
        settings = Settings.of(conf)
        settings.validate()
        choices = OmegaConf.select(config, "hydra.runtime.choices", default={}) or {}
        task = task_function if task_function is not None else _task_of(launcher)
        own = is_own_app(task)
        self.study_name = str(settings.study_name or choices.get("sweep")
                              or ("imbsweep" if own else OmegaConf.select(config, "hydra.job.name", default=None))
                              or "imbsweep")
        self.app = app = App.of(task, config, settings, self.study_name)
        # the official plugin's deprecated search_space, where params is not given
        self.settings = settings = dataclasses.replace(settings, params=search_space_params(
            settings.params, settings.search_space))
        self.objectives = app.objectives
        self.extend = custom_space(settings.custom_search_space)
        self.baseline = settings.baseline_values(app.own)
        self.worker = os.environ.get(WORKER_ENV)  # set in the processes this sweep starts
        self.n_jobs, self.gpus = share_gpus(settings.n_jobs, settings.workers_per_gpu,
                                            bool(self.worker) or not runs_here(launcher))
        self.posthoc_arms: dict[str, str] = {}  # post-hoc arm -> its source arm
        self.posthoc_kinds: dict[str, str] = {}  # post-hoc arm -> what re-scores it (posthoc.POSTHOC_KINDS)
        if settings.tournament:
            self.arms = build_arms(settings, config, self.arguments, config_loader, self.study_name)
            self.n_trials = sum(a.budget for a in self.arms)
            self.posthoc_arms, self.posthoc_kinds = posthoc_arms(settings.posthoc_arms, self.arms, self.objectives,
                                                                 app.own)
            self.baseline_arm: str | None = baseline_arm(settings.baseline_arm, self.arms)
        else:
            self.space = SearchSpace.build(settings.params, settings.conditional, self.arguments)
            self.n_trials = 20 if settings.n_trials is None else settings.n_trials
            if settings.sampler_name == "grid":
                cap = grid_size(self.space) + (0 if self.baseline is None else 1)
                if self.n_trials > cap:
                    log.warning("the grid has %d points%s: n_trials %d lowered to %d",
                                cap - (self.baseline is not None),
                                " (+ the baseline)" if self.baseline is not None else "", self.n_trials, cap)
                    self.n_trials = cap
            self.arms = [Arm(None, self.study_name, self.space, self.n_trials,
                             defaults=config_defaults(config, choices, list(self.space.names())))]
            self.baseline_arm = None
        if self.n_jobs > self.n_trials:  # (a worker more than the budget would only start and stop)
            log.warning("hydra.sweeper.n_jobs=%d for %d trials: %d worker(s)", self.n_jobs, self.n_trials,
                        self.n_trials)
            self.n_jobs, self.gpus = self.n_trials, self.gpus[:self.n_trials]
        if settings.reproducible and self.n_jobs > len(self.arms):  # (more would only wait)
            log.warning("hydra.sweeper.reproducible runs one trial of each arm at a time: n_jobs %d lowered to %d",
                        self.n_jobs, len(self.arms))
            self.n_jobs, self.gpus = len(self.arms), self.gpus[:len(self.arms)]
        for arm in self.arms:  # a bad sampler setting is an error before any storage is touched
            self._sampler(0, arm.space)
        note = range_note()
        if note and not os.environ.get(WORKER_ENV):  # (once: not again in each worker)
            log.warning(note)
        self.state = state_of(app.env)
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        preflight(self)  # the space against the config and the data, the stores: before any study is opened
        self.storage = open_storage(settings.storage, self.state, settings.heartbeat_interval)
        self.pruner = make_pruner(settings.pruner)
        self.job_idx = 0
        self.jobs = make_jobs(launcher, config, app.own)  # (imbsweep's app: composed from a cached base)
        self.threads = torch_threads(self.n_jobs, config) if app.own and runs_here(launcher) else None
        url = settings.storage
        self.journal = (Path(url) if url else journal_path(self.state)) \
            if not url or str(url).endswith(JOURNAL_SUFFIXES) else None

    def _check_kind(self) -> set[str]:
        """A tournament and a plain study never share a name (their runs would mix in one
        MLflow experiment); checked under the budget lock, before anything is written.
        Returns the names of the storage's studies."""
        names = {s.study_name for s in optuna.get_all_study_summaries(self.storage, include_best_trial=False)}
        tournament = self.arms[0].name is not None
        arm_studies = sorted(n for n in names if n.startswith(self.study_name + "/"))
        if tournament and self.study_name in names:
            raise ConfigError("hydra.sweeper.study_name", self.study_name,
                              "exists as a study without arms; a tournament needs a name of its own")
        if not tournament and arm_studies:
            raise ConfigError("hydra.sweeper.study_name", self.study_name,
                              f"is a tournament ({', '.join(arm_studies)}); a study without arms needs "
                              "a name of its own")
        for name, source in self.posthoc_arms.items():
            if f"{self.study_name}/{name}" in names:  # its trained trials would mix with the re-scored ones
                raise ConfigError(f"hydra.sweeper.posthoc_arms.{name}", source,
                                  f"study {self.study_name!r} already has a trained arm {name!r}; give the "
                                  "post-hoc arm another name, or the sweep another study_name")
        return names

    def _open(self, arm: Arm, directions: list[Any]) -> optuna.Study:
        study = optuna.create_study(study_name=arm.study_name, storage=self.storage, pruner=self.pruner,
                                    directions=directions, load_if_exists=True)
        if list(study.directions) != [optuna.study.StudyDirection[d.upper()] for d in directions]:
            raise ConfigError("objective.direction", directions,
                              f"study {arm.study_name!r} already exists with other directions")
        check_resume(arm, study, self.study_name)  # a changed space: before anything is asked or written
        study.sampler = self._sampler(len(study.get_trials(deepcopy=False)), arm.space)
        names = [m for m, _ in self.objectives]
        if study.metric_names != names:  # optuna-dashboard and Optuna's plots name the objective
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(names)
        if arm.name is not None:
            values = {k: str(v) for k, v in arm.values.items()}
            before = study.user_attrs.get(ATTR_ARM_VALUES)
            if before is not None and before != values:
                raise ConfigError(f"hydra.sweeper.arms.{arm.name}", values,
                                  f"this arm of study {self.study_name!r} already ran with {before}; give the "
                                  "changed arm a new name (its trials would mix with the old ones)")
            if before is None:  # what the dashboard shows beside the arm's study
                study.set_user_attr(ATTR_TOURNAMENT, self.study_name)
                study.set_user_attr(ATTR_ARM, arm.name)
                study.set_user_attr(ATTR_ARM_VALUES, values)
                study.set_user_attr(ATTR_METRIC, self.objectives[0][0])
        return study

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> optuna.Study | list[optuna.Study]:
        from ._mlflow import ParentRun  # imports mlflow
        from ._progress import SweepProgress

        directions: list[Any] = [d for _, d in self.objectives]
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        data = None
        if self.app.own:
            from ..data import study_data

            data = study_data(self.config)  # built (and cached) once here; a study stays on one dataset
        parent: ParentRun | None = None
        try:
            with budget_lock(self.storage, self.study_name, self.journal):
                # under the lock: workers starting together find one parent run, not one each
                existed = self._check_kind()
                try:
                    for arm in self.arms:
                        arm.study = self._open(arm, directions)
                        self._enqueue_baseline(arm)
                    parent = ParentRun(self.app.env, self.study_name, self.settings.raw, owner=not self.worker,
                                       baseline_arm=self.baseline_arm, posthoc_arms=self.posthoc_arms,
                                       posthoc_kinds=self.posthoc_kinds, data=data, app=self.app)
                    if not self.worker:  # runs a store refused to end when their trials were re-queued
                        parent.end_orphans(self.arms)
                except BaseException:
                    if parent is None:
                        drop_new_studies(self.storage, self.arms, existed)  # no empty study left behind
                    raise
            studies = [a.study for a in self.arms]
            progress = SweepProgress(self.study_name, self.n_trials, self.objectives, show=not self.worker)
            log.info("study %s: %d/%d trials finished%s; storage %s", self.study_name, counts(studies)["finished"],
                     self.n_trials, f" ({len(self.arms)} arms)" if self.arms[0].name is not None else "",
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
                        if all(counts(a.study)["finished"] >= a.budget for a in self.arms):
                            break
                        parent.flush_progress()  # (no trial of this process's own meanwhile)
                        time.sleep(0.5)  # the rest of the budget runs elsewhere; watch it
                    else:
                        assert claimed is not None
                        self._one_trial(claimed, trial, parent)
                        parent.log_progress(studies)
                        self._check_failures(studies)
                    progress.update(studies)
                join(workers)
                parent.flush_progress()
        except BaseException:
            stopping = True
            stop(workers)
            raise
        finally:
            if not self.worker:
                self._write_study_files(parent, studies, stopping)
        if not self.worker:
            from ._summary import print_summary

            print_summary(self.study_name, [(a.name, a.study) for a in self.arms], self.objectives,
                          self.baseline_arm, self.posthoc_arms, self.posthoc_kinds, self.app.own, self.app.seed_key)
        return studies[0] if self.arms[0].name is None else studies

    def _write_study_files(self, parent: Any, studies: list[optuna.Study], stopping: bool) -> None:
        """optimization_results.yaml and the study's plots in MLflow. While an error stops the
        sweep (a storage gone), a failure here says nothing more: that error goes on, unhidden."""
        from ._summary import write_results

        try:
            results = write_results(self.arms, self.objectives, self.posthoc_arms, self.posthoc_kinds,
                                    self.sweep_dir)
        except Exception:
            if not stopping:
                raise
            log.debug("the study's results file was not written", exc_info=True)
            return
        try:
            parent.log_study_artifacts(studies, results)
        except Exception as exc:  # noqa: BLE001 - plots must not lose a finished study
            (log.debug if stopping else log.warning)("could not log the study's plots to MLflow: %s", exc)

    def _claim(self, parent: Any) -> tuple[Arm | None, optuna.Trial | None]:
        """Under the study's budget lock: recover dead workers' trials, then ask for a trial
        of the arm with the fewest finished + running trials, if one is below its budget.
        ``reproducible``: only of an arm with no trial running and at most one trial more than
        the least served has (so at most two ahead once it runs; else none: the caller waits),
        each ask seeded by its number."""
        reproducible = self.settings.reproducible
        with budget_lock(self.storage, self.study_name, self.journal):
            below: list[tuple[int, int, Arm]] = []
            for a in self.arms:
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

    def _enqueue_baseline(self, arm: Arm) -> None:
        """The first trial of the study (of each arm): the config's defaults for what is
        searched (a plain study: the sweep's ``baseline`` values first)."""
        study = arm.study
        if self.baseline is None:  # switched off (or an app's plain study: hydra.sweeper.baseline=auto)
            return
        if any(t.user_attrs.get(ATTR_BASELINE) for t in study.get_trials(deepcopy=False)):
            return
        baseline = dict(self.baseline) if arm.name is None else {}
        params = baseline_params(arm.space, arm.defaults, baseline)
        study.enqueue_trial(params, user_attrs={ATTR_BASELINE: True}, skip_if_exists=True)

    def _one_trial(self, arm: Arm, trial: optuna.Trial, parent: Any) -> None:
        study = arm.study
        sampled = arm.space.sample(trial)
        extra: list[str] = []
        if self.extend is not None:  # hydra.sweeper.custom_search_space: what it suggests on the trial
            self.extend(self.config, trial)
            extra = [override(k, v) for k, v in trial.params.items() if k not in sampled]
        ctx: dict[str, Any] = {"study": self.study_name, "number": trial.number, "trial_id": trial._trial_id,
                               "experiment_id": parent.experiment_id, "parent_run_id": parent.run_id,
                               "state": str(self.state), "objectives": [list(o) for o in self.objectives]}
        if not self.app.own:  # the store as this process reached it: a job may run in another folder (chdir)
            from .._stores import redact
            from ._usertask import resolved_storage

            uri = str(parent.uri)
            if redact(uri) == uri:  # (a URI with credentials never travels in a job's config)
                ctx["tracking_uri"] = resolved_storage(uri, os.getcwd())
        if arm.name is not None:
            ctx.update({"optuna_study": arm.study_name, "arm": arm.name})
            kinds = sorted({self.posthoc_kinds[a] for a, src in self.posthoc_arms.items() if src == arm.name})
            if kinds:
                ctx["posthoc"] = kinds  # the trial keeps its post-hoc values for the post-hoc arms
        overrides = [*arm.space.overrides(sampled), *extra, trial_override(ctx)]
        if self.threads and "trainer.num_threads" not in arm.space.names():
            overrides.append(f"trainer.num_threads={self.threads}")
        try:
            ret = self.jobs.run(overrides, self.job_idx)
        except JobLost as exc:
            self.job_idx += 1
            self._lost(arm, trial, parent, str(exc))
            return
        except (KeyboardInterrupt, LaunchFailed) as exc:
            # a run that ended before the interrupt keeps its outcome; else the study stays
            # resumable: this trial fails uncounted, an identical one waits
            why = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else str(exc)
            with budget_lock(self.storage, self.study_name, self.journal), contextlib.suppress(RuntimeError):
                frozen = study._storage.get_trial(trial._trial_id)  # (RuntimeError: finished meanwhile)
                if not frozen.state.is_finished() and not finish(study, frozen):
                    requeue(study, frozen, why)
                    if isinstance(exc, LaunchFailed) or not runs_here(self.launcher):  # (its job's run: not ended)
                        parent.end_dead_runs([frozen], arm.name, f"{why}; trial re-queued"[:500])
            raise
        self.job_idx += 1
        with signals_held():  # Ctrl-C lands after Optuna knows what MLflow recorded
            self._tell(study, trial, ret)

    def _lost(self, arm: Arm, trial: optuna.Trial, parent: Any, why: str) -> None:
        """The launcher lost the trial's job (killed, out of memory, its node gone): re-queued,
        not counted (``_workers.requeue``: the same parameters lost 3 times fail for good). Under
        the budget lock, as another worker's recovery of a trial whose heartbeat stopped."""
        study = arm.study
        with budget_lock(self.storage, self.study_name, self.journal), signals_held():
            try:
                frozen = study._storage.get_trial(trial._trial_id)
                if frozen.state.is_finished() or finish(study, frozen):  # recovered meanwhile; an outcome recorded
                    return
                reason = f"its job was lost: {why}"
                again = requeue(study, frozen, reason, lost=True)
            except RuntimeError:  # finished meanwhile by another worker
                return
            parent.end_dead_runs([frozen], arm.name, ("its job was lost; trial re-queued" if again else reason)[:500])
        if again:
            log.warning("trial %d of %s: its job was lost (%s); re-queued", trial.number, study.study_name, why[:300])
        else:
            self.last_error = reason

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret: Any) -> None:
        from hydra.core.utils import JobStatus

        value = job_value(ret)
        if isinstance(value, StorageError):  # the store, not the trial: stop, the next run recovers it
            raise value
        if study._storage.get_trial(trial._trial_id).state.is_finished():
            log.warning("trial %d was failed and re-queued by another worker (stale heartbeat) "
                        "before it finished; its result is dropped", trial.number)
            return
        if ret.status == JobStatus.COMPLETED:
            values = value if isinstance(value, list | tuple) else [value]
            try:
                study.tell(trial, [float(v) for v in values])
                return
            except (TypeError, ValueError) as exc:
                value = exc
        if isinstance(value, optuna.TrialPruned):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return
        reason = f"{type(value).__name__}: {value}"
        trial.set_user_attr(ATTR_FAIL_REASON, reason[:2000])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.warning("trial %d of %s failed: %s", trial.number, study.study_name, reason)
        self.last_error = reason

    def _check_failures(self, studies: Sequence[optuna.Study]) -> None:
        c = counts(studies)
        if c["fail"] > self.settings.max_failure_rate * self.n_trials:
            raise SweepStopped(
                f"study {self.study_name!r} stopped: {c['fail']} of {self.n_trials} trials failed "
                f"(more than hydra.sweeper.max_failure_rate={self.settings.max_failure_rate}); last error: "
                f"{getattr(self, 'last_error', '?')}")


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
    log.info("study %s done in %.1f s", sweep.study_name, time.monotonic() - t0)
