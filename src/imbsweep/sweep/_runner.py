"""The sweep loop: ask Optuna, launch one Hydra job per trial, tell Optuna, record in MLflow.

The study's target ``n_trials`` counts every finished trial across restarts (complete,
pruned and failed, but not those re-queued after an interruption), so running the same
command again resumes towards the target instead of adding ``n_trials`` more.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from .._config import check_choice
from .._paths import state_dir
from ..errors import ConfigError, ImbsweepError
from ._space import SearchSpace, override
from ._study import make_pruner, make_sampler, open_storage
from ._task import CONTEXT_KEY, objective_metrics

log = logging.getLogger(__name__)
ATTR_BASELINE, ATTR_REQUEUED = "imbsweep:baseline", "imbsweep:requeued"
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
    return c


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
            out[key] = baseline.get(key, defaults.get(key))
    return out


class Sweep:
    """One worker's sweep over one study (see the module docstring)."""

    def __init__(self, conf: Mapping[str, Any], config: DictConfig, launcher: Any,
                 arguments: Sequence[str]) -> None:
        self.conf, self.config, self.launcher = conf, config, launcher
        self.n_trials = int(conf.get("n_trials", 20))
        if self.n_trials < 1:
            raise ConfigError("hydra.sweeper.n_trials", self.n_trials, "must be an integer >= 1")
        self.max_failure_rate = float(conf.get("max_failure_rate", 0.5))
        if not 0 <= self.max_failure_rate <= 1:
            raise ConfigError("hydra.sweeper.max_failure_rate", self.max_failure_rate, "must be in [0, 1]")
        self.space = SearchSpace.build(conf.get("params"), conf.get("conditional"), list(arguments))
        self.objectives = objective_metrics(config)
        for metric, direction in self.objectives:
            check_choice("objective.direction", direction, ("maximize", "minimize"))
            if not metric.startswith("val/"):
                raise ConfigError("objective.metric", metric, "must be a validation metric (val/...)")
        choices = OmegaConf.select(config, "hydra.runtime.choices", default={}) or {}
        self.study_name = str(conf.get("study_name") or choices.get("sweep") or "imbsweep")
        self.state = state_dir(config.get("state_dir") or "mlruns")
        self.storage = open_storage(conf.get("storage"), self.state)
        self.pruner = make_pruner(conf.get("pruner") or {"name": "none"})
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.job_idx = 0
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
        self._enqueue_baseline(study)
        parent = ParentRun(self.config, self.study_name, self.conf)
        progress = SweepProgress(self.study_name, self.n_trials, self.objectives)
        log.info("study %s: %d/%d trials finished; storage %s", self.study_name,
                 counts(study)["finished"], self.n_trials, _describe(self.conf.get("storage"), self.state))
        try:
            with parent, progress:
                progress.update(study)
                while counts(study)["finished"] < self.n_trials:
                    self._one_trial(study, parent)
                    progress.update(study)
                    parent.log_progress(study)
                    self._check_failures(study)
        finally:
            self._write_results(study)
        return study

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

    def _one_trial(self, study: optuna.Study, parent: Any) -> None:
        trial = study.ask()
        sampled = self.space.sample(trial)
        ctx = {"study": self.study_name, "number": trial.number, "trial_id": trial._trial_id,
               "experiment_id": parent.experiment_id, "parent_run_id": parent.run_id}
        overrides = [*self.space.overrides(sampled), "+" + dict_override(CONTEXT_KEY, ctx)]
        try:
            (ret,) = self.launcher.launch([overrides], initial_job_idx=self.job_idx)
        except KeyboardInterrupt:
            # leave the study resumable: this trial fails, an identical one waits in the queue
            attrs = {"imbsweep:requeued_from": trial.number}
            if trial.user_attrs.get(ATTR_BASELINE):
                attrs[ATTR_BASELINE] = True
            trial.set_user_attr(ATTR_REQUEUED, True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs=attrs)
            raise
        self.job_idx += 1
        self._tell(study, trial, ret)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret: Any) -> None:
        from hydra.core.utils import JobStatus

        value = ret._return_value
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

    def _write_results(self, study: optuna.Study) -> None:
        """``optimization_results.yaml`` in the official plugin's format."""
        done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
        if not done:
            return
        if len(self.objectives) == 1:
            best = study.best_trial
            results: dict[str, Any] = {"name": "optuna", "best_params": best.params, "best_value": best.value}
        else:
            results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values}
                                                       for t in study.best_trials]}
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")


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
