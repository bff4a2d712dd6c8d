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

import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from .._config import validate_objective
from .._paths import state_dir
from ..errors import ConfigError, ImbsweepError, StorageError
from ..tracking import signals_held
from ._checks import check_resume, check_settings, describe, drop_new_studies, preflight
from ._jobs import make_jobs
from ._space import SearchSpace, override, parse, written_override
from ._study import JOURNAL_SUFFIXES, grid_size, local_storage_path, make_pruner, make_sampler, open_storage
from ._task import CONTEXT_KEY, objective_metrics
from ._workers import (
    ATTR_ARM,
    ATTR_BASELINE,
    ATTR_REQUEUED,
    ATTR_TOURNAMENT,
    budget_lock,
    finish,
    mark_running,
    posthoc_attr,
    recover_dead,
    requeue,
)

ATTR_ARM_VALUES = "imbsweep:arm_values"  # on an arm's study: what the arm fixes or searches, as written

log = logging.getLogger(__name__)
WORKER_ENV, THREADS_ENV = "IMBSWEEP_WORKER", "IMBSWEEP_THREADS"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.FAIL)


class SweepStopped(ImbsweepError):
    """The sweep stopped early (too many failures); the study is kept and resumable."""

    exit_code = 1


def counts(study: optuna.Study | Sequence[optuna.Study]) -> Counter[str]:
    """Trials by state (summed over several studies: a tournament's arms); failed trials
    that were re-queued do not count."""
    c: Counter[str] = Counter()
    for s in ([study] if isinstance(study, optuna.Study) else study):
        for t in s.get_trials(deepcopy=False):
            if t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get(ATTR_REQUEUED):
                continue
            c[t.state.name.lower()] += 1
    c["finished"] = c["complete"] + c["pruned"] + c["fail"]
    return c  # also "running" and "waiting"


def best_trial(studies: Sequence[optuna.Study], direction: str) -> optuna.trial.FrozenTrial | None:
    """The best complete trial over several single-objective studies (None: none complete)."""
    done = [t for s in studies for t in s.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if not done:
        return None
    pick = max if direction == "maximize" else min
    return pick(done, key=lambda t: float(t.values[0]))


def _inside(key: str, dist: Any, value: Any) -> tuple[bool, Any]:
    """``(True, value)`` when ``value`` lies in ``dist``; a number outside an interval is
    moved to its nearest bound (a weight decay of 0 under ``tag(log, interval(1e-6, …))``
    starts at 1e-6, about 0); ``(False, None)`` otherwise."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return (value in dist.choices), value
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number:
        return False, None
    try:
        if dist._contains(dist.to_internal_repr(value)):
            return True, value
    except (TypeError, ValueError):  # 0 under a log interval
        pass
    from optuna.distributions import FloatDistribution, IntDistribution

    if (isinstance(dist, FloatDistribution) and dist.step is None) or \
            (isinstance(dist, IntDistribution) and dist.step == 1 and isinstance(value, int)):
        bound = dist.low if value < dist.low else dist.high
        log.info("%s: the config's %r lies outside %r; the first trial starts at %r", key, value, dist, bound)
        return True, bound
    return False, None


def baseline_params(space: SearchSpace, defaults: Mapping[str, Any], baseline: Mapping[str, Any],
                    ) -> dict[str, Any]:
    """The baseline trial: the sweep's ``baseline`` values, else the config's defaults, each
    kept only when it lies inside its search space (a default outside a ``choice`` is left to
    the sampler, with a warning naming the key)."""
    out: dict[str, Any] = {}

    def take(key: str, dist: Any, value: Any) -> bool:
        if key in baseline:  # an explicit baseline value is used as given, or not at all
            ok = _inside(key, dist, value) == (True, value)
        else:
            ok, value = _inside(key, dist, value)
        if ok:
            out[key] = value
        else:
            log.warning("hydra.sweeper: %s=%r (%s) is outside its search space %s; the sampler picks "
                        "it in the first trial", key, value, "the baseline's" if key in baseline
                        else "the config's default", describe(dist))
        return ok

    for key, dist in space.params.items():
        value = baseline.get(key, defaults.get(key))
        if value is not None:
            take(key, dist, value)
    known = {**space.fixed_for_conditions, **space.fixed, **out}
    for key, cond in space.conditional.items():
        if cond.active(known) and (key in baseline or defaults.get(key) is not None) \
                and take(key, cond.distribution, baseline.get(key, defaults.get(key))):
            known[key] = out[key]
    return out


@dataclass
class Arm:
    """One arm of a tournament (or, with ``name`` None, the whole sweep of a plain study)."""

    name: str | None
    study_name: str
    space: SearchSpace
    budget: int
    values: dict[str, Any] = field(default_factory=dict)  # what the arm fixes (or searches), as written
    defaults: dict[str, Any] = field(default_factory=dict)  # each searched key's value in its config
    study: Any = None  # optuna.Study, opened in Sweep.run
    seeded: bool = False  # its sampler seeded at this process's first ask


class Sweep:
    """One worker's sweep over one study, or over a tournament's arms (see the module docstring)."""

    def __init__(self, conf: Mapping[str, Any], config: DictConfig, launcher: Any,
                 arguments: Sequence[str], config_loader: Any = None) -> None:
        self.conf, self.config, self.launcher = conf, config, launcher
        self.config_loader = config_loader
        self.arguments = list(arguments)
        check_settings(conf)
        self.max_failure_rate = float(conf.get("max_failure_rate", 0.5))
        if not 0 <= self.max_failure_rate <= 1:
            raise ConfigError("hydra.sweeper.max_failure_rate", self.max_failure_rate, "must be in [0, 1]")
        validate_objective(config)
        self.objectives = objective_metrics(config)
        choices = OmegaConf.select(config, "hydra.runtime.choices", default={}) or {}
        self.study_name = str(conf.get("study_name") or choices.get("sweep") or "imbsweep")
        self.n_jobs = int(conf.get("n_jobs", 1))
        if self.n_jobs < 1:
            raise ConfigError("hydra.sweeper.n_jobs", self.n_jobs, "must be an integer >= 1")
        self.posthoc_arms: dict[str, str] = {}  # post-hoc arm -> its source arm
        self.posthoc_kinds: dict[str, str] = {}  # post-hoc arm -> what re-scores it (training.POSTHOC_KINDS)
        if conf.get("arms"):
            self.arms = self._build_arms(conf["arms"])
            self.n_trials = sum(a.budget for a in self.arms)
            self.posthoc_arms, self.posthoc_kinds = self._posthoc_arms(conf.get("posthoc_arms"))
        else:
            for key in ("trials_per_arm", "baseline_arm", "posthoc_arms"):
                if conf.get(key) not in (None, {}):
                    raise ConfigError(f"hydra.sweeper.{key}", conf[key], "needs hydra.sweeper.arms")
            self.space = SearchSpace.build(conf.get("params"), conf.get("conditional"), self.arguments)
            n = conf.get("n_trials")
            self.n_trials = 20 if n is None else _positive_int("hydra.sweeper.n_trials", n)
            if (conf.get("sampler") or {}).get("name") == "grid":
                cap = grid_size(self.space) + (0 if conf.get("baseline") is None else 1)
                if self.n_trials > cap:
                    log.warning("the grid has %d points (+ the baseline): n_trials %d lowered to %d",
                                cap - (conf.get("baseline") is not None), self.n_trials, cap)
                    self.n_trials = cap
            self.arms = [Arm(None, self.study_name, self.space, self.n_trials,
                             defaults=self._defaults(choices, keys=list(self.space.names())))]
        self.baseline_arm = self.arms[0].name if self.arms[0].name is None else self._baseline_arm()
        for arm in self.arms:  # a bad sampler setting is an error before any storage is touched
            self._sampler(0, arm.space)
        self.state = state_dir(config.get("state_dir") or "mlruns")
        preflight(self)  # the space against the config and the data, the stores: before any study is opened
        self.storage = open_storage(conf.get("storage"), self.state, conf.get("heartbeat_interval"))
        self.pruner = make_pruner(conf.get("pruner") or {"name": "none"})
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.job_idx = 0
        self.jobs = make_jobs(launcher, config)
        self.worker = os.environ.get(WORKER_ENV)  # set in the processes this sweep starts
        self.threads = _threads(self.n_jobs, config)
        storage_url = conf.get("storage")
        self.journal = (Path(storage_url) if storage_url else local_storage_path(self.state)) \
            if not storage_url or str(storage_url).endswith(JOURNAL_SUFFIXES) else None

    def _defaults(self, choices: Mapping[str, Any], config: Any = None, keys: Any = ()) -> dict[str, Any]:
        """Each of ``keys``' value in the composed config (group keys: the chosen option)."""
        config = self.config if config is None else config
        out = {}
        for key in keys:
            if key in choices:
                out[key] = choices[key]
            else:
                value = OmegaConf.select(config, key, default=None)
                if value is not None and not OmegaConf.is_config(value):
                    out[key] = value
        return out

    # -- a tournament's arms ----------------------------------------------------------------
    def _build_arms(self, arms_conf: Any) -> list[Arm]:
        """Each arm's search space: the sweep's space with the arm's values applied as if
        typed before the command line's overrides (a plain value fixes a key, a search
        expression searches it in this arm only), conditions decided on the config that the
        arm composes to."""
        conf = self.conf
        if not isinstance(arms_conf, Mapping):
            raise ConfigError("hydra.sweeper.arms", arms_conf, "must map an arm's name to the values it fixes")
        per_arm = conf.get("trials_per_arm")
        if per_arm is None:
            raise ConfigError("hydra.sweeper.trials_per_arm", None,
                              "must be an integer >= 1 with hydra.sweeper.arms (every arm's budget)")
        per_arm = _positive_int("hydra.sweeper.trials_per_arm", per_arm)
        n = conf.get("n_trials")
        if n is not None and n != per_arm * len(arms_conf):
            raise ConfigError("hydra.sweeper.n_trials", n,
                              f"must be unset (null) or {len(arms_conf)} arms x trials_per_arm {per_arm} = "
                              f"{per_arm * len(arms_conf)} in a tournament; set trials_per_arm instead")
        if conf.get("baseline"):
            raise ConfigError("hydra.sweeper.baseline", dict(conf["baseline"]),
                              "must be {} or null with hydra.sweeper.arms: each arm's first trial is the "
                              "config's defaults for what the arm does not fix (null: no such trials)")
        if (conf.get("sampler") or {}).get("name") == "grid":
            raise ConfigError("hydra.sweeper.sampler.name", "grid", "cannot run a tournament; use tpe or random")
        from optuna.distributions import BaseDistribution

        cond_keys = {str(k) for spec in (conf.get("conditional") or {}).values()
                     if isinstance(spec, Mapping) for k in dict(spec.get("when") or {})}
        # the command line's fixed values, less those of conditional keys (they apply only
        # where their condition holds): what every arm's config is composed with
        cli_fixed = [o for o in self.arguments if not _is_sweep(o)
                     and o.partition("=")[0].lstrip("+~") not in (conf.get("conditional") or {})]
        arms = []
        seen_keys: set[str] = set()
        for name, values in arms_conf.items():
            name = str(name)
            where = f"hydra.sweeper.arms.{name}"
            if not name or "/" in name or "${" in name or name != name.strip():
                raise ConfigError("hydra.sweeper.arms", name, "an arm's name must be non-empty, without '/', "
                                  "'${' or surrounding spaces")
            if values is not None and not isinstance(values, Mapping):
                raise ConfigError(where, values, "must map config keys to values or search expressions")
            values = {str(k): v for k, v in (values or {}).items()}
            texts, fixed = [], []
            for key, value in values.items():
                text = written_override(key, value)
                texts.append(text)
                if not isinstance(parse(key, text.partition("=")[2], where=where), BaseDistribution):
                    fixed.append(text)  # (parsed here so that a bad expression names the arm)
            arm_cfg, arm_choices = self._compose(name, fixed, cli_fixed)
            space = SearchSpace.build(conf.get("params"), conf.get("conditional"), self.arguments,
                                      arm_overrides=texts,
                                      config_values=_none_for_missing(
                                          self._defaults(arm_choices, arm_cfg, cond_keys), cond_keys))
            self._check_keys(name, space, arm_cfg, arm_choices)
            seen_keys.update(k for k in cond_keys if _in_config(k, arm_cfg, arm_choices))
            seen_keys.update(space.names())
            arms.append(Arm(name, f"{self.study_name}/{name}", space, per_arm, values,
                            self._defaults(arm_choices, arm_cfg, list(space.names()))))
        for key, spec in (conf.get("conditional") or {}).items():
            for cond_key in dict(spec.get("when") or {}) if isinstance(spec, Mapping) else {}:
                if str(cond_key) not in seen_keys:
                    raise ConfigError(f"hydra.sweeper.conditional.{key}.when", str(cond_key),
                                      "names no key of any arm's config and no searched parameter")
        return arms

    @staticmethod
    def _check_keys(arm: str, space: SearchSpace, cfg: Any, choices: Mapping[str, Any]) -> None:
        """A key the arm searches must exist in the config the arm composes to (else every
        trial of the arm would fail to compose); a conditional key is checked where its
        condition is decided by what the arm fixes."""
        keys = list(space.params)
        fixed = {**space.fixed_for_conditions, **space.fixed}
        for key, cond in space.conditional.items():
            if all(k in fixed for k in cond.when) and cond.active(fixed):
                keys.append(key)
        for key in keys:
            if not key.startswith("+") and not _in_config(key, cfg, choices):
                raise ConfigError(f"hydra.sweeper.arms.{arm}", key,
                                  "searches a key that this arm's config does not have (add it with + on the "
                                  "command line, or fix it in the arms that have it)")

    def _compose(self, arm: str, overrides: list[str], cli_fixed: list[str]) -> tuple[Any, Mapping[str, Any]]:
        """The config one of the arm's trials starts from (the arm's fixed values, then the
        command line's), and its group choices; an unknown key or option names the arm."""
        if self.config_loader is None:
            choices = OmegaConf.select(self.config, "hydra.runtime.choices", default={}) or {}
            return self.config, choices
        from hydra.errors import HydraException

        try:
            cfg = self.config_loader.load_sweep_config(self.config, [*overrides, *cli_fixed])
        except HydraException as exc:
            msg = " ".join(str(exc).split())
            raise ConfigError(f"hydra.sweeper.arms.{arm}", overrides, f"does not compose: {msg}") from None
        return cfg, OmegaConf.select(cfg, "hydra.runtime.choices", default={}) or {}

    def _posthoc_arms(self, spec: Any) -> tuple[dict[str, str], dict[str, str]]:
        """``{name: source arm}`` and ``{name: kind}``: arms scored on their source arm's trials
        after a post-hoc step every run scans, ``name: source`` for post-hoc logit adjustment
        or ``name: {of: source, by: kind}`` (``by: taunorm``: tau-normalisation); they need the
        objective's ``_<kind>`` twin, which every run logs for the headline metrics (see
        ``training.posthoc_scan`` and ``training.taunorm_scan``)."""
        from ..training import POSTHOC_KINDS

        if not spec:
            return {}, {}
        key = "hydra.sweeper.posthoc_arms"
        if not isinstance(spec, Mapping):
            raise ConfigError(key, spec, "must map an arm's name to the arm whose trials it re-scores")
        names = [a.name for a in self.arms]
        metric = self.objectives[0][0]
        if len(self.objectives) > 1 or posthoc_metric(metric) is None:
            from ..training import POSTHOC_METRICS

            raise ConfigError(key, dict(spec), f"needs a single objective val/<m> with m one of "
                              f"{', '.join(POSTHOC_METRICS)} (runs log its post-hoc twin); the objective is "
                              + ", ".join(m for m, _ in self.objectives))
        out, kinds = {}, {}
        for name, value in spec.items():
            name, source, kind = str(name), value, "posthoc"
            if isinstance(value, Mapping):
                if set(value) != {"of", "by"} or str(value["by"]) not in POSTHOC_KINDS:
                    raise ConfigError(f"{key}.{name}", dict(value), "must be a source arm's name, or {of: <source "
                                      f"arm>, by: <one of {', '.join(POSTHOC_KINDS)}>}}")
                source, kind = value["of"], str(value["by"])
            source = str(source)
            if not name or "/" in name or "${" in name or name != name.strip() or name in names:
                raise ConfigError(f"{key}.{name}", source, "needs a name of its own: non-empty, without '/', "
                                  "'${' or surrounding spaces, and not one of hydra.sweeper.arms")
            if source not in names:
                raise ConfigError(f"{key}.{name}", source, f"must name one of the arms: {', '.join(map(str, names))}")
            out[name], kinds[name] = source, kind
        return out, kinds

    def _baseline_arm(self) -> str:
        names = [a.name for a in self.arms]
        wanted = self.conf.get("baseline_arm")
        if wanted is None:
            return "ce" if "ce" in names else str(names[0])
        if wanted not in names:
            raise ConfigError("hydra.sweeper.baseline_arm", wanted,
                              f"must be one of the arms: {', '.join(map(str, names))}")
        return str(wanted)

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
                study.set_user_attr("imbsweep:metric", self.objectives[0][0])
        return study

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> optuna.Study | list[optuna.Study]:
        from ._mlflow import ParentRun
        from ._progress import SweepProgress

        directions: list[Any] = [d for _, d in self.objectives]
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        from ..data import study_data

        data = study_data(self.config)  # built (and cached) once here; a study stays on one dataset
        with budget_lock(self.storage, self.study_name, self.journal):
            # under the lock: workers starting together find one parent run, not one each
            existed = self._check_kind()
            try:
                for arm in self.arms:
                    arm.study = self._open(arm, directions)
                    self._enqueue_baseline(arm)
                parent = ParentRun(self.config, self.study_name, self.conf, owner=not self.worker,
                                   baseline_arm=self.baseline_arm if self.arms[0].name is not None else None,
                                   posthoc_arms=self.posthoc_arms, posthoc_kinds=self.posthoc_kinds, data=data)
            except BaseException:
                drop_new_studies(self.storage, self.arms, existed)  # no empty study left behind
                raise
        studies = [a.study for a in self.arms]
        progress = SweepProgress(self.study_name, self.n_trials, self.objectives, show=not self.worker)
        log.info("study %s: %d/%d trials finished%s; storage %s", self.study_name, counts(studies)["finished"],
                 self.n_trials, f" ({len(self.arms)} arms)" if self.arms[0].name is not None else "",
                 _describe(self.conf.get("storage"), self.state))
        workers: list[subprocess.Popen[bytes]] = []
        try:
            with parent, progress:
                workers = self._start_workers()
                progress.update(studies)
                while True:
                    self._reap(workers)
                    claimed, trial = self._claim(parent)
                    if trial is None:
                        if all(counts(a.study)["finished"] >= a.budget for a in self.arms):
                            break
                        time.sleep(0.5)  # the rest of the budget runs elsewhere; watch it
                    else:
                        assert claimed is not None
                        self._one_trial(claimed, trial, parent)
                        parent.log_progress(studies)
                        self._check_failures(studies)
                    progress.update(studies)
                self._join(workers)
        except BaseException:
            self._stop(workers)
            raise
        finally:
            if not self.worker:
                results = self._write_results(self.arms)
                try:
                    parent.log_study_artifacts(studies, results)
                except Exception as exc:  # noqa: BLE001 - plots must not lose a finished study
                    log.warning("could not log the study's plots to MLflow: %s", exc)
        if not self.worker:
            from ._summary import print_summary

            print_summary(self.study_name, [(a.name, a.study) for a in self.arms], self.objectives,
                          self.baseline_arm, self.posthoc_arms, self.posthoc_kinds)
        return studies[0] if self.arms[0].name is None else studies

    def _claim(self, parent: Any) -> tuple[Arm | None, optuna.Trial | None]:
        """Under the study's budget lock: recover dead workers' trials, then ask for a trial
        of the arm with the fewest finished + running trials, if one is below its budget."""
        with budget_lock(self.storage, self.study_name, self.journal):
            below: list[tuple[int, Arm]] = []
            for a in self.arms:
                parent.end_dead_runs(recover_dead(a.study), a.name)
                c = counts(a.study)
                if c["finished"] + c["running"] < a.budget:
                    below.append((c["finished"] + c["running"], a))
            if not below:
                return None, None
            _, arm = min(below, key=lambda u: u[0])  # the first of the least served, in the file's order
            if not arm.seeded:  # this process's own seed stream: see _sampler
                # every ask adds a trial or takes a waiting one: the non-waiting count is unique
                asked = [t for t in arm.study.get_trials(deepcopy=False) if t.state != optuna.trial.TrialState.WAITING]
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

    def _reap(self, workers: list[subprocess.Popen[bytes]]) -> None:
        """Collect workers that exited (a killed one would otherwise stay a zombie that looks
        alive to the liveness check); the next claim recovers their trials."""
        for w in workers:
            if w.returncode is None and w.poll() is not None and w.returncode != 0:
                log.warning("worker pid %d exited with %s; its trial, if any, is re-queued", w.pid, w.returncode)

    def _join(self, workers: list[subprocess.Popen[bytes]]) -> None:
        for w in workers:
            if w.returncode is None and w.wait() != 0:  # (those reaped before were reported then)
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

    def _sampler(self, n_existing: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
        """The configured sampler; its seed is offset by the trials the study has (waiting ones
        aside) when this process first asks for one, under the budget lock (:meth:`_claim`): every
        ask adds one to that count, so a fresh study
        run by one process is reproducible, a resumed one does not replay its draws, and
        processes started together (workers, or the same command on several machines) each
        draw their own stream: under the lock no two of them see the same count. Arms start
        from the same seed: arms with the same free parameters draw the same start-up points
        (common random numbers), until each arm's own results steer its sampler."""
        spec = dict(self.conf.get("sampler") or {"name": "tpe"})
        if spec.get("seed") is not None:
            spec["seed"] = int(spec["seed"]) + n_existing
        return make_sampler(spec, space)

    def _enqueue_baseline(self, arm: Arm) -> None:
        """The first trial of the study (of each arm): the config's defaults for what is
        searched (a plain study: the sweep's ``baseline`` values first)."""
        study = arm.study
        if self.conf.get("baseline") is None:  # explicitly switched off
            return
        if any(t.user_attrs.get(ATTR_BASELINE) for t in study.get_trials(deepcopy=False)):
            return
        baseline = dict(self.conf.get("baseline") or {}) if arm.name is None else {}
        params = baseline_params(arm.space, arm.defaults, baseline)
        study.enqueue_trial(params, user_attrs={ATTR_BASELINE: True}, skip_if_exists=True)

    def _one_trial(self, arm: Arm, trial: optuna.Trial, parent: Any) -> None:
        study = arm.study
        sampled = arm.space.sample(trial)
        ctx: dict[str, Any] = {"study": self.study_name, "number": trial.number, "trial_id": trial._trial_id,
                               "experiment_id": parent.experiment_id, "parent_run_id": parent.run_id}
        if arm.name is not None:
            ctx.update({"optuna_study": arm.study_name, "arm": arm.name})
            kinds = sorted({self.posthoc_kinds[a] for a, src in self.posthoc_arms.items() if src == arm.name})
            if kinds:
                ctx["posthoc"] = kinds  # the trial keeps its post-hoc values for the post-hoc arms
        overrides = [*arm.space.overrides(sampled), "+" + dict_override(CONTEXT_KEY, ctx)]
        if self.threads and "trainer.num_threads" not in arm.space.names():
            overrides.append(f"trainer.num_threads={self.threads}")
        try:
            ret = self.jobs.run(overrides, self.job_idx)
        except KeyboardInterrupt:
            # a run that ended before the interrupt keeps its outcome; else the study stays
            # resumable: this trial fails uncounted, an identical one waits
            frozen = study._storage.get_trial(trial._trial_id)
            if not frozen.state.is_finished() and not finish(study, frozen):
                requeue(study, frozen, "interrupted (Ctrl-C)")
            raise
        self.job_idx += 1
        with signals_held():  # Ctrl-C lands after Optuna knows what MLflow recorded
            self._tell(study, trial, ret)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret: Any) -> None:
        from hydra.core.utils import JobStatus

        value = ret._return_value
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
        trial.set_user_attr("fail_reason", reason[:2000])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.warning("trial %d of %s failed: %s", trial.number, study.study_name, reason)
        self.last_error = reason

    def _check_failures(self, studies: Sequence[optuna.Study]) -> None:
        c = counts(studies)
        if c["fail"] > self.max_failure_rate * self.n_trials:
            raise SweepStopped(
                f"study {self.study_name!r} stopped: {c['fail']} of {self.n_trials} trials failed "
                f"(more than hydra.sweeper.max_failure_rate={self.max_failure_rate}); last error: "
                f"{getattr(self, 'last_error', '?')}")

    def _write_results(self, arms: Sequence[Arm]) -> Path | None:
        """``optimization_results.yaml`` in the official plugin's format (a tournament adds
        each arm's best under ``arms``)."""
        studies = [a.study for a in arms]
        if not counts(studies)["complete"]:
            return None
        if len(self.objectives) == 1:
            best = best_trial(studies, self.objectives[0][1])
            assert best is not None
            results: dict[str, Any] = {"name": "optuna", "best_params": best.params, "best_value": best.value}
            if arms[0].name is not None:
                results["best_arm"] = best.user_attrs.get(ATTR_ARM)
                results["arms"] = {}
                for a in arms:
                    b = best_trial([a.study], self.objectives[0][1])
                    if b is not None:
                        results["arms"][a.name] = {"fixed": {k: str(v) for k, v in a.values.items()},
                                                   "best_params": b.params, "best_value": b.value,
                                                   "best_trial": b.number}
                for name, source in self.posthoc_arms.items():
                    src = next(a for a in arms if a.name == source)
                    kind = self.posthoc_kinds.get(name, "posthoc")
                    b = best_posthoc(src.study, self.objectives[0][1], kind)
                    if b is not None:
                        results["arms"][name] = {"posthoc_of": source, "posthoc_by": kind, "best_params": b.params,
                                                 "best_value": b.user_attrs[posthoc_attr(kind)],
                                                 "best_trial": b.number}
        else:
            results = {"name": "optuna", "solutions": [
                {**({"arm": a.name} if a.name is not None else {}), "params": t.params, "values": t.values}
                for a in arms if counts([a.study])["complete"] for t in a.study.best_trials]}
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        path = self.sweep_dir / "optimization_results.yaml"
        OmegaConf.save(OmegaConf.create(results), path)
        return path


def posthoc_metric(metric: str, kind: str = "posthoc") -> str | None:
    """The post-hoc twin every run logs for the objective ``metric`` (None: it has none);
    ``kind`` is one of ``training.POSTHOC_KINDS``, whose scans report the same metrics."""
    from ..training import POSTHOC_METRICS

    split, _, name = metric.partition("/")
    return f"{metric}_{kind}" if split == "val" and name in POSTHOC_METRICS else None


def best_posthoc(study: optuna.Study, direction: str, kind: str = "posthoc") -> optuna.trial.FrozenTrial | None:
    """The complete trial with the best value after the post-hoc ``kind`` (ties: the lower number)."""
    attr = posthoc_attr(kind)
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get(attr) is not None]
    if not done:
        return None
    sign = -1.0 if direction == "maximize" else 1.0
    return min(done, key=lambda t: (sign * float(t.user_attrs[attr]), t.number))


def _in_config(key: str, cfg: Any, choices: Mapping[str, Any]) -> bool:
    """Whether ``key`` is a group (``loss``) or a key of the composed config (null counts)."""
    if key in choices:
        return True
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    return OmegaConf.is_dict(node) and leaf in node


def _none_for_missing(values: dict[str, Any], keys: Any) -> dict[str, Any]:
    """A key the arm's config lacks (``loss.class_weights`` of logit_adjusted) is known to
    hold none of a condition's values."""
    return {k: values.get(k) for k in keys}


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, value, "must be an integer >= 1")
    return value


def _is_sweep(override_text: str) -> bool:
    """Whether an override (``key=expr``) is a search expression rather than a value."""
    key, eq, expr = override_text.partition("=")
    if not eq:
        return False
    from optuna.distributions import BaseDistribution

    return isinstance(parse(key.lstrip("+~"), expr, where=None), BaseDistribution)


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


def run_sweep(conf: Mapping[str, Any], config: DictConfig, launcher: Any, arguments: Sequence[str],
              config_loader: Any = None) -> Any:
    t0 = time.monotonic()
    sweep = Sweep(conf, config, launcher, arguments, config_loader)
    result = sweep.run()
    log.info("study %s done in %.1f s", sweep.study_name, time.monotonic() - t0)
    return result
