"""Storage, samplers and pruners by name."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, check_distribution_compatibility

from .._paths import journal_path
from ..errors import ConfigError
from ..names import ATTR_ARM, ATTR_ARM_VALUES, ATTR_METRIC, ATTR_TOURNAMENT, JOURNAL_SUFFIXES
from ._space import describe

if TYPE_CHECKING:
    from ._arms import Arm

log = logging.getLogger(__name__)
SAMPLERS = ("tpe", "random", "gp", "cmaes", "qmc", "nsgaii", "grid")
PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband", "wilcoxon")


_OPENED: dict[tuple[str, int | None], Any] = {}  # this process's storages, by URL (see open_storage)


def open_storage(url: str | None, state_dir: Path, heartbeat_interval: int | None = None,
                 reuse: bool = False) -> Any:
    """An Optuna storage from a URL (any RDB URL Optuna accepts: ``sqlite:///…``,
    ``postgresql://…``, ``mysql://…``), a journal file path (``….log``), or, when ``url`` is
    empty, the local journal file under the state folder, which several local worker
    processes share safely (file locks, no "database is locked"). On RDB storages,
    ``heartbeat_interval`` (seconds) turns on Optuna's heartbeats: a trial whose worker stops
    beating for twice that long is failed and re-queued by the next worker, on any machine.

    ``reuse``: the storage this process opened last for the same URL, if any (a sweep's job
    runs in the sweep's process: replaying the journal or connecting again for every trial
    cost ~40 ms a trial)."""
    key = (str(url) if url else str(journal_path(state_dir)), heartbeat_interval or None)
    if reuse and key in _OPENED:
        return _OPENED[key]
    _OPENED[key] = storage = _open_storage(url, state_dir, heartbeat_interval)
    return storage


def _open_storage(url: str | None, state_dir: Path, heartbeat_interval: int | None) -> Any:
    from optuna.storages import JournalStorage

    from .._stores import sqlalchemy_url  # postgresql:// means psycopg 3 to SQLAlchemy 2.1: psycopg2 here
    from ._journal import JournalFile, journal_lock

    if not url or str(url).endswith(JOURNAL_SUFFIXES):
        path = Path(url) if url else journal_path(state_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return JournalStorage(JournalFile(str(path), journal_lock(str(path))))
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return _retrying_rdb()(sqlalchemy_url(str(url)), engine_kwargs=_engine_kwargs(str(url)),
                                       heartbeat_interval=heartbeat_interval or None)
        except Exception as exc:  # noqa: BLE001 - any connection problem is reported as one line
            # workers starting together on a fresh database race to create Optuna's schema;
            # the loser sees "already exists" and finds the schema there on the next try
            if ("already exists" in str(exc) or "UniqueViolation" in str(exc)) and attempt < 4:
                time.sleep(0.5 * (attempt + 1))
                continue
            from .._stores import redact
            from ..errors import db_reason

            raise ConfigError("hydra.sweeper.storage", redact(str(url)),
                              f"cannot open this Optuna storage ({type(exc).__name__}: {db_reason(exc)})") from None
    raise AssertionError("unreachable")


#: RDBStorage's calls that read or write the database (what a dropped connection can cut)
_RDB_CALLS = ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
              "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
              "get_study_system_attrs", "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies",
              "create_new_trial", "set_trial_param", "get_trial_param", "set_trial_state_values",
              "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
              "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials", "get_best_trial",
              "record_heartbeat", "_get_stale_trial_ids",
              # what Optuna's cache in front of RDBStorage calls in place of the public ones
              "_get_trials", "_create_new_trial", "_set_trial_param", "_get_best_trial_id")
RDB_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)  # seconds between attempts: a restart of the database is survived


def _disconnected(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it, or what it was raised while handling) is a lost or
    refused database connection: a driver's disconnection, or SQLAlchemy's refusal to go on in
    a transaction a lost connection invalidated (``PendingRollbackError``)."""
    from sqlalchemy import exc as sa_exc

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.PendingRollbackError) or \
                (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated):
            return True
        # (as Python shows a chain: a retry that gave up raises ``from None``, and is not retried again)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)  # type: ignore[assignment]
    return False


def _retrying_rdb() -> type:
    """Optuna's RDBStorage whose calls survive a database that goes away for a few seconds
    (a restart, a failover): a call cut by a lost connection is retried on a fresh one, up
    to :data:`RDB_RETRY_DELAYS`, each retry logged; a lasting outage is one line naming the
    storage, its password hidden. (Optuna reports a lost connection as "invalid data in the
    commit".) Each call is its own transaction, rolled back when it failed."""
    from optuna.storages import RDBStorage

    from .._stores import redact
    from ..errors import StorageError

    def retrying(name: str) -> Any:
        method = getattr(RDBStorage, name)

        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            first_failure = None
            for attempt, delay in enumerate((*RDB_RETRY_DELAYS, None)):
                try:
                    return method(self, *args, **kwargs)
                except Exception as exc:
                    if not _disconnected(exc):
                        raise
                    cause = str(exc.__cause__ or exc).strip().splitlines()[0] if str(exc.__cause__ or exc).strip() \
                        else type(exc).__name__
                    first_failure = first_failure or time.monotonic()
                    # (the retries' time, not only their number: a call with retries of its own
                    # inside, Optuna's five for _create_new_trial, does not multiply the wait)
                    if delay is None or time.monotonic() - first_failure >= sum(RDB_RETRY_DELAYS):
                        if name == "record_heartbeat":  # (in Optuna's heartbeat thread: a beat missed, not a fault)
                            log.warning("Optuna storage %s: a heartbeat of trial %s was not recorded (%s); the "
                                        "trial goes on", redact(self.url), args[0] if args else "?", cause)
                            return None
                        raise StorageError(f"the Optuna storage {redact(self.url)} is unreachable ({cause}); "
                                           "what it holds is kept: run the same command to resume once it "
                                           "is back") from None
                    # the first retry of a call is said (a short outage: one line); the rest only in the debug log
                    (log.warning if attempt == 0 else log.debug)(
                        "Optuna storage %s: connection lost in %s (%s); retry %d of %d in %.1f s",
                        redact(self.url), name, cause, attempt + 1, len(RDB_RETRY_DELAYS), delay)
                    with contextlib.suppress(Exception):  # a fresh session: one cut mid-transaction refuses more
                        self.remove_session()
                    time.sleep(delay)
            raise AssertionError("unreachable")

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call

    return type("RetryingRDBStorage", (RDBStorage,), {name: retrying(name) for name in _RDB_CALLS})


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


def _sampler_classes() -> dict[str, type]:
    S = optuna.samplers
    return {"tpe": S.TPESampler, "random": S.RandomSampler, "gp": S.GPSampler, "cmaes": S.CmaEsSampler,
            "qmc": S.QMCSampler, "nsgaii": S.NSGAIISampler, "grid": S.GridSampler}


def _pruner_classes() -> dict[str, type]:
    P = optuna.pruners
    return {"none": P.NopPruner, "median": P.MedianPruner, "percentile": P.PercentilePruner,
            "successive_halving": P.SuccessiveHalvingPruner, "hyperband": P.HyperbandPruner,
            "wilcoxon": P.WilcoxonPruner}


@functools.cache
def _takes(cls: type) -> frozenset[str]:
    """The keyword arguments of ``cls`` (a trial's job makes its pruner: once per class)."""
    import inspect

    return frozenset(inspect.signature(cls).parameters)


def fit_kwargs(kind: str, name: str, kwargs: dict[str, Any], classes: dict[str, type]) -> dict[str, Any]:
    """Keep the keys the chosen class takes. Keys of *another* sampler/pruner (a sweep file's
    TPE settings after ``hydra/sweeper/sampler=random`` on the command line) are dropped with a
    warning; a key that no class takes is an error (a typo)."""
    mine = _takes(classes[name])
    known = set().union(*(_takes(c) for c in classes.values()))
    for k in kwargs:
        if k not in known:
            raise ConfigError(f"hydra.sweeper.{kind}.{k}", kwargs[k],
                              f"not an argument of {classes[name].__name__}; it takes: {', '.join(sorted(mine))}")
    dropped = sorted(k for k in kwargs if k not in mine)
    said = f"{kind} {name} ignores {', '.join(dropped)} (arguments of other {kind}s)"
    if dropped and said not in _SAID:  # (once a process: the sampler is made again for every arm and worker)
        _SAID.add(said)
        logging.getLogger(__name__).warning(said)
    return {k: v for k, v in kwargs.items() if k in mine}


_SAID: set[str] = set()


def make_sampler(spec: Mapping[str, Any], space: Any = None) -> optuna.samplers.BaseSampler:
    """The sampler ``hydra.sweeper.sampler`` describes: a ``hydra/sweeper/sampler`` option's
    node (``{_target_: optuna.samplers.TPESampler, seed: 0, ...}``; a setting left null takes
    Optuna's default, a nested ``_target_`` node is instantiated), or, from Python,
    ``{name: tpe, ...keyword arguments}``. The grid sampler's grid is ``space``'s."""
    spec = dict(spec)
    spec.pop("_partial_", None)
    target = spec.pop("_target_", None)
    if target is None:
        name = spec.pop("name", "tpe")
        if name not in SAMPLERS:
            raise ConfigError("hydra/sweeper/sampler", name, f"must be one of {', '.join(SAMPLERS)}")
        cls: Any = _sampler_classes()[name]
        kwargs = fit_kwargs("sampler", name, spec, _sampler_classes())
    else:
        cls = _sampler_class(str(target))
        kwargs = {k: _built(v) for k, v in spec.items() if v is not None}
        if isinstance(cls, type):  # (the motpe option's target is a function that says it was removed)
            known = _sampler_classes()
            name = next((n for n, c in known.items() if c is cls), None)
            if name is None:  # a class of the user's: its own arguments
                takes = _takes(cls)
                for k, v in kwargs.items():
                    if k not in takes:
                        raise ConfigError(f"hydra.sweeper.sampler.{k}", v, f"not an argument of {cls.__name__}; "
                                          f"it takes: {', '.join(sorted(takes))}")
            else:  # another sampler's settings (a sweep file's, after hydra/sweeper/sampler=…): ignored
                kwargs = fit_kwargs("sampler", name, kwargs, known)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if cls is optuna.samplers.GridSampler:
                return _GridSampler(_grid(space), **kwargs)
            sampler = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        shown = target.rsplit(".", 1)[-1] if target else "sampler"
        raise ConfigError("hydra/sweeper/sampler", shown, " ".join(str(exc).split())) from None
    if not isinstance(sampler, optuna.samplers.BaseSampler):
        raise ConfigError("hydra.sweeper.sampler._target_", target, "must name an Optuna sampler class")
    return sampler


def _sampler_class(target: str) -> Any:
    """The class (or callable) a sampler node's ``_target_`` names."""
    from hydra.utils import get_object

    try:
        return get_object(target)
    except Exception as exc:  # noqa: BLE001 - any import problem is the same bad input
        raise ConfigError("hydra.sweeper.sampler._target_", target,
                          f"cannot be imported ({' '.join(str(exc).split())[:200]})") from None


def _built(value: Any) -> Any:
    """A sampler argument: a node with a ``_target_`` (``independent_sampler``) instantiated."""
    if isinstance(value, Mapping) and "_target_" in value:
        from hydra.utils import instantiate

        return instantiate(dict(value))
    return value


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` once the grid is exhausted: outside
    ``optimize()`` that call raises inside ``tell()`` before the trial's state is stored.
    The sweep keeps its own budget (capped at the grid's size, see ``grid_size``)."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def grid_size(space: Any) -> int:
    """How many distinct points the grid sampler has for this space."""
    import math

    return math.prod(len(v) for v in _grid(space).values())


def _grid(space: Any) -> dict[str, list[Any]]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    grid: dict[str, list[Any]] = {}
    if space is not None and space.conditional:
        raise ConfigError("hydra/sweeper/sampler", "grid", "cannot search conditional parameters; use tpe or random")
    for key, dist in (space.params if space is not None else {}).items():
        if isinstance(dist, CategoricalDistribution):
            grid[key] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            grid[key] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution) and dist.step is not None:  # range(0.5, 2.5, 0.5)
            grid[key] = [dist.low + i * dist.step for i in range(round((dist.high - dist.low) / dist.step) + 1)]
        else:
            raise ConfigError(f"hydra.sweeper.params.{key}", repr(dist),
                              "the grid sampler needs choice(...) or range(...), not an interval")
    return grid


def make_pruner(spec: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    """``{name: median, ...keyword arguments of the pruner}``."""
    name = spec.get("name", "none")
    classes = _pruner_classes()
    if name not in classes:
        raise ConfigError("hydra.sweeper.pruner.name", name, f"must be one of {', '.join(PRUNERS)}")
    kwargs = fit_kwargs("pruner", name, {k: v for k, v in dict(spec).items() if k != "name"}, classes)
    if name == "percentile":
        kwargs.setdefault("percentile", 25.0)  # Optuna has no default; 25 = prune the worst quarter
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return classes[name](**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError("hydra.sweeper.pruner", dict(spec), str(exc)) from None


def check_resume(arm: Arm, study: optuna.Study, study_name: str) -> None:
    """On resume, every searched parameter's space is one Optuna can go on with: the same
    kind, the same log scale, a choice with the same values in the same order (else Optuna
    fails in the middle of the next trial that samples it)."""
    dists = arm.space.distributions()
    before: dict[str, BaseDistribution] = {}
    for t in study.get_trials(deepcopy=False):
        for key, old in t.distributions.items():
            before[key] = old  # the latest trial's
    for key, new in dists.items():
        if key not in before:
            continue
        old = before[key]
        try:
            check_distribution_compatibility(old, new)
        except ValueError:
            what = ("a choice's values (and their order)" if isinstance(old, CategoricalDistribution)
                    and isinstance(new, CategoricalDistribution) else
                    "an interval's log scale" if type(old) is type(new) else "a parameter's kind")
            raise ConfigError(key, describe(new), f"study {arm.study_name!r} searched it over {describe(old)}, and "
                              f"Optuna cannot change {what} within a study: resume with {describe(old)}, or "
                              f"start a new study (hydra.sweeper.study_name={study_name}_2)") from None


def open_arm(arm: Arm, study_name: str, objectives: list[tuple[str, str]], storage: Any,
             pruner: optuna.pruners.BasePruner, directions: list[Any],
             sampler: Callable[[int, Any], optuna.samplers.BaseSampler]) -> optuna.Study:
    """The arm's Optuna study, created or resumed: the same directions, a space Optuna can go on
    with (:func:`check_resume`), ``sampler(trials it has, space)``, the objectives' names and
    (a tournament) the arm's values recorded on it, or the same as those it ran with."""
    study = optuna.create_study(study_name=arm.study_name, storage=storage, pruner=pruner,
                                directions=directions, load_if_exists=True)
    if list(study.directions) != [optuna.study.StudyDirection[d.upper()] for d in directions]:
        raise ConfigError("objective.direction", directions,
                          f"study {arm.study_name!r} already exists with other directions")
    check_resume(arm, study, study_name)  # a changed space: before anything is asked or written
    study.sampler = sampler(len(study.get_trials(deepcopy=False)), arm.space)
    names = [m for m, _ in objectives]
    if study.metric_names != names:  # optuna-dashboard and Optuna's plots name the objective
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
    if arm.name is not None:
        values = {k: str(v) for k, v in arm.values.items()}
        before = study.user_attrs.get(ATTR_ARM_VALUES)
        if before is not None and before != values:
            raise ConfigError(f"hydra.sweeper.arms.{arm.name}", values,
                              f"this arm of study {study_name!r} already ran with {before}; give the "
                              "changed arm a new name (its trials would mix with the old ones)")
        if before is None:  # what the dashboard shows beside the arm's study
            study.set_user_attr(ATTR_TOURNAMENT, study_name)
            study.set_user_attr(ATTR_ARM, arm.name)
            study.set_user_attr(ATTR_ARM_VALUES, values)
            study.set_user_attr(ATTR_METRIC, objectives[0][0])
    return study
