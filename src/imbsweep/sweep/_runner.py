"""The sweep loop: ask Optuna, launch one Hydra job per trial, tell Optuna, record in MLflow.

The study's target ``n_trials`` counts every finished trial across restarts (complete,
pruned and failed, but not those re-queued after an interruption), so running the same
command again resumes towards the target instead of adding ``n_trials`` more.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from .._config import validate_objective
from .._paths import state_dir
from ..errors import ConfigError, ImbsweepError
from ._space import SearchSpace, override
from ._study import JOURNAL_SUFFIXES, grid_size, local_storage_path, make_pruner, make_sampler, open_storage
from ._task import CONTEXT_KEY, objective_metrics
from ._workers import ATTR_BASELINE, ATTR_REQUEUED, budget_lock, mark_running, recover_dead, requeue

log = logging.getLogger(__name__)
WORKER_ENV, THREADS_ENV = "IMBSWEEP_WORKER", "IMBSWEEP_THREADS"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.FAIL)


class SweepStopped(ImbsweepError):
    """The sweep stopped early (too many failures); the study is kept and resumable."""

    exit_code = 1


def counts(study: optuna.Study) -> Counter[str]:
    """Trials by state; failed trials that were re-queued do not count."""
    c: Counter[str] = Counter()
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get(ATTR_REQUEUED):
            continue
        c[t.state.name.lower()] += 1
    c["finished"] = c["complete"] + c["pruned"] + c["fail"]
    return c  # also "running" and "waiting"


def baseline_params(space: SearchSpace, defaults: Mapping[str, Any], baseline: Mapping[str, Any],
                    ) -> dict[str, Any]:
    """The baseline trial: the sweep's ``baseline`` values, else the config's defaults."""
    out: dict[str, Any] = {}
    for key in space.params:
        value = baseline.get(key, defaults.get(key))
        if value is not None:
            out[key] = value
    known = {**space.fixed_for_conditions, **space.fixed, **out}
    for key, cond in space.conditional.items():
        if cond.active(known) and (key in baseline or defaults.get(key) is not None):
            out[key] = known[key] = baseline.get(key, defaults.get(key))
    return out


class Sweep:
    """One worker's sweep over one study (see the module docstring)."""

    def __init__(self, conf: Mapping[str, Any], config: DictConfig, launcher: Any,
                 arguments: Sequence[str]) -> None:
        self.conf, self.config, self.launcher = conf, config, launcher
        self.n_trials = int(conf.get("n_trials", 20))
        if self.n_trials < 1:
            raise ConfigError("hydra.sweeper.n_trials", self.n_trials, "must be an integer >= 1")
        self.space = SearchSpace.build(conf.get("params"), conf.get("conditional"), list(arguments))
        if (conf.get("sampler") or {}).get("name") == "grid":
            cap = grid_size(self.space) + (0 if conf.get("baseline") is None else 1)
            if self.n_trials > cap:
                log.warning("the grid has %d points (+ the baseline): n_trials %d lowered to %d",
                            cap - (conf.get("baseline") is not None), self.n_trials, cap)
                self.n_trials = cap
        self.max_failure_rate = float(conf.get("max_failure_rate", 0.5))
        if not 0 <= self.max_failure_rate <= 1:
            raise ConfigError("hydra.sweeper.max_failure_rate", self.max_failure_rate, "must be in [0, 1]")
        validate_objective(config)
        self.objectives = objective_metrics(config)
        choices = OmegaConf.select(config, "hydra.runtime.choices", default={}) or {}
        self.study_name = str(conf.get("study_name") or choices.get("sweep") or "imbsweep")
        self.state = state_dir(config.get("state_dir") or "mlruns")
        self.storage = open_storage(conf.get("storage"), self.state, conf.get("heartbeat_interval"))
        self.pruner = make_pruner(conf.get("pruner") or {"name": "none"})
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.job_idx = 0
        self.n_jobs = int(conf.get("n_jobs", 1))
        if self.n_jobs < 1:
            raise ConfigError("hydra.sweeper.n_jobs", self.n_jobs, "must be an integer >= 1")
        self.worker = os.environ.get(WORKER_ENV)  # set in the processes this sweep starts
        self.threads = _threads(self.n_jobs, config)
        storage_url = conf.get("storage")
        self.journal = (Path(storage_url) if storage_url else local_storage_path(self.state)) \
            if not storage_url or str(storage_url).endswith(JOURNAL_SUFFIXES) else None
        self.defaults = self._defaults(choices)

    def _defaults(self, choices: Mapping[str, Any]) -> dict[str, Any]:
        """Each searched key's value in the composed config (group keys: the chosen option)."""
        out = {}
        for key in self.space.names():
            if key in choices:
                out[key] = choices[key]
            else:
                value = OmegaConf.select(self.config, key, default=None)
                if value is not None and not OmegaConf.is_config(value):
                    out[key] = value
        return out

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> optuna.Study:
        from ._mlflow import ParentRun
        from ._progress import SweepProgress

        directions: list[Any] = [d for _, d in self.objectives]
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name=self.study_name, storage=self.storage,
                                    pruner=self.pruner, directions=directions, load_if_exists=True)
        study.sampler = self._sampler(len(study.get_trials(deepcopy=False)))
        if list(study.directions) != [optuna.study.StudyDirection[d.upper()] for d in directions]:
            raise ConfigError("objective.direction", directions,
                              f"study {self.study_name!r} already exists with other directions")
        with budget_lock(self.storage, self.study_name, self.journal):
            # under the lock: workers starting together find one parent run, not one each
            self._enqueue_baseline(study)
            parent = ParentRun(self.config, self.study_name, self.conf, owner=not self.worker)
        progress = SweepProgress(self.study_name, self.n_trials, self.objectives, show=not self.worker)
        log.info("study %s: %d/%d trials finished; storage %s", self.study_name,
                 counts(study)["finished"], self.n_trials, _describe(self.conf.get("storage"), self.state))
        workers: list[subprocess.Popen[bytes]] = []
        try:
            with parent, progress:
                workers = self._start_workers()
                progress.update(study)
                while True:
                    trial, c = self._claim(study, parent)
                    if trial is None:
                        if c["finished"] >= self.n_trials:
                            break
                        time.sleep(0.5)  # the rest of the budget runs elsewhere; watch it
                    else:
                        self._one_trial(study, trial, parent)
                        parent.log_progress(study)
                        self._check_failures(study)
                    progress.update(study)
                self._join(workers)
        except BaseException:
            self._stop(workers)
            raise
        finally:
            if not self.worker:
                results = self._write_results(study)
                try:
                    parent.log_study_artifacts(study, results)
                except Exception as exc:  # noqa: BLE001 - plots must not lose a finished study
                    log.warning("could not log the study's plots to MLflow: %s", exc)
        if not self.worker:
            from ._summary import print_summary

            print_summary(study, self.objectives, self.n_trials)
        return study

    def _claim(self, study: optuna.Study, parent: Any) -> tuple[optuna.Trial | None, Counter[str]]:
        """Under the study's budget lock: recover dead workers' trials, then ask for a trial
        only if finished + running trials are still below the target."""
        with budget_lock(self.storage, self.study_name, self.journal):
            parent.end_dead_runs(recover_dead(study))
            c = counts(study)
            if c["finished"] + c["running"] >= self.n_trials:
                return None, c
            with warnings.catch_warnings():  # we run the heartbeat thread ourselves (see _task)
                warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
                trial = study.ask()
            mark_running(trial)
            return trial, c

    def _start_workers(self) -> list[subprocess.Popen[bytes]]:
        """``n_jobs - 1`` more processes running this same command as plain workers."""
        if self.worker or self.n_jobs == 1:
            return []
        task = list(OmegaConf.select(self.config, "hydra.overrides.task", default=[]) or [])
        hydra = [o for o in OmegaConf.select(self.config, "hydra.overrides.hydra", default=[]) or []
                 if not o.startswith(("hydra.sweeper.n_jobs=", "hydra.sweep.dir=", "hydra.sweep.subdir="))]
        procs = []
        for k in range(1, self.n_jobs):
            cmd = [sys.executable, "-m", "imbsweep", "run", "-m", *task, *hydra, "hydra.sweeper.n_jobs=1",
                   f"hydra.sweep.dir={self.sweep_dir}", f"hydra.sweep.subdir=w{k}_${{hydra.job.num}}"]
            env = {**os.environ, WORKER_ENV: str(k), THREADS_ENV: str(self.threads or "")}
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL))
        log.info("started %d more worker process(es); torch threads per worker: %s", len(procs), self.threads)
        return procs

    def _join(self, workers: list[subprocess.Popen[bytes]]) -> None:
        for w in workers:
            if w.wait() not in (0, None):
                log.warning("worker pid %d exited with %s", w.pid, w.returncode)

    def _stop(self, workers: list[subprocess.Popen[bytes]]) -> None:
        """Ctrl-C or an error: workers stop their trial (re-queued) and exit."""
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGINT)
        for w in workers:
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                w.kill()

    def _sampler(self, n_existing: int) -> optuna.samplers.BaseSampler:
        """The configured sampler; its seed is offset by the trials the study already has, so
        a fresh study is reproducible and a resumed one does not replay the same draws."""
        spec = dict(self.conf.get("sampler") or {"name": "tpe"})
        if spec.get("seed") is not None:
            spec["seed"] = int(spec["seed"]) + n_existing
        return make_sampler(spec, self.space)

    def _enqueue_baseline(self, study: optuna.Study) -> None:
        if any(t.user_attrs.get(ATTR_BASELINE) for t in study.get_trials(deepcopy=False)):
            return
        baseline = dict(self.conf.get("baseline") or {})
        if self.conf.get("baseline") is None:  # explicitly switched off
            return
        params = baseline_params(self.space, self.defaults, baseline)
        study.enqueue_trial(params, user_attrs={ATTR_BASELINE: True}, skip_if_exists=True)

    def _one_trial(self, study: optuna.Study, trial: optuna.Trial, parent: Any) -> None:
        sampled = self.space.sample(trial)
        ctx = {"study": self.study_name, "number": trial.number, "trial_id": trial._trial_id,
               "experiment_id": parent.experiment_id, "parent_run_id": parent.run_id}
        overrides = [*self.space.overrides(sampled), "+" + dict_override(CONTEXT_KEY, ctx)]
        if self.threads and "trainer.num_threads" not in self.space.names():
            overrides.append(f"trainer.num_threads={self.threads}")
        try:
            (ret,) = self.launcher.launch([overrides], initial_job_idx=self.job_idx)
        except KeyboardInterrupt:
            # leave the study resumable: this trial fails uncounted, an identical one waits
            requeue(study, study._storage.get_trial(trial._trial_id), "interrupted (Ctrl-C)")
            raise
        self.job_idx += 1
        self._tell(study, trial, ret)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret: Any) -> None:
        from hydra.core.utils import JobStatus

        value = ret._return_value
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
        trial.set_user_attr("fail_reason", reason[:2000])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.warning("trial %d failed: %s", trial.number, reason)
        self.last_error = reason

    def _check_failures(self, study: optuna.Study) -> None:
        c = counts(study)
        if c["fail"] > self.max_failure_rate * self.n_trials:
            raise SweepStopped(
                f"study {self.study_name!r} stopped: {c['fail']} of {self.n_trials} trials failed "
                f"(more than hydra.sweeper.max_failure_rate={self.max_failure_rate}); last error: "
                f"{getattr(self, 'last_error', '?')}")

    def _write_results(self, study: optuna.Study) -> Path | None:
        """``optimization_results.yaml`` in the official plugin's format."""
        done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
        if not done:
            return None
        if len(self.objectives) == 1:
            best = study.best_trial
            results: dict[str, Any] = {"name": "optuna", "best_params": best.params, "best_value": best.value}
        else:
            results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values}
                                                       for t in study.best_trials]}
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        path = self.sweep_dir / "optimization_results.yaml"
        OmegaConf.save(OmegaConf.create(results), path)
        return path


def _threads(n_jobs: int, config: DictConfig) -> int | None:
    """Torch threads per trial so that ``n_jobs`` workers do not oversubscribe the cores
    (``trainer.num_threads`` set by the user wins)."""
    if os.environ.get(THREADS_ENV):
        return int(os.environ[THREADS_ENV])
    if n_jobs == 1 or OmegaConf.select(config, "trainer.num_threads") is not None:
        return None
    return max(1, (os.cpu_count() or 1) // n_jobs)


def dict_override(key: str, mapping: Mapping[str, Any]) -> str:
    """``key={a:1,b:'x y'}`` in Hydra's override grammar."""
    return key + "={" + ",".join(override(k, v).replace("=", ":", 1) for k, v in mapping.items()) + "}"


def _describe(storage: Any, state: Path) -> str:
    from .._config import redact
    from ._study import local_storage_path

    return redact(str(storage)) if storage else f"{local_storage_path(state)} (journal file)"


def run_sweep(conf: Mapping[str, Any], config: DictConfig, launcher: Any, arguments: Sequence[str]) -> Any:
    t0 = time.monotonic()
    study = Sweep(conf, config, launcher, arguments).run()
    log.info("study %s done in %.1f s", study.study_name, time.monotonic() - t0)
    return study
