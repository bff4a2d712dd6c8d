"""Storage, samplers and pruners by name."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna

from ..errors import ConfigError

SAMPLERS = ("tpe", "random", "gp", "cmaes", "qmc", "nsgaii", "grid")
PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband", "wilcoxon")
JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")


def local_storage_path(state_dir: Path) -> Path:
    return state_dir / "optuna" / "journal.log"


def open_storage(url: str | None, state_dir: Path, heartbeat_interval: int | None = None) -> Any:
    """An Optuna storage from a URL (any RDB URL Optuna accepts: ``sqlite:///…``,
    ``postgresql://…``, ``mysql://…``), a journal file path (``….log``), or, when ``url`` is
    empty, the local journal file under the state folder, which several local worker
    processes share safely (file locks, no "database is locked"). On RDB storages,
    ``heartbeat_interval`` (seconds) turns on Optuna's heartbeats: a trial whose worker stops
    beating for twice that long is failed and re-queued by the next worker, on any machine."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    from .._stores import sqlalchemy_url  # postgresql:// means psycopg 3 to SQLAlchemy 2.1: psycopg2 here

    if not url or str(url).endswith(JOURNAL_SUFFIXES):
        path = Path(url) if url else local_storage_path(state_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(sqlalchemy_url(str(url)), engine_kwargs=_engine_kwargs(str(url)),
                                  heartbeat_interval=heartbeat_interval or None)
        except Exception as exc:  # noqa: BLE001 - any connection problem is reported as one line
            # workers starting together on a fresh database race to create Optuna's schema;
            # the loser sees "already exists" and finds the schema there on the next try
            if ("already exists" in str(exc) or "UniqueViolation" in str(exc)) and attempt < 4:
                time.sleep(0.5 * (attempt + 1))
                continue
            from .._config import redact

            raise ConfigError("hydra.sweeper.storage", redact(str(url)),
                              f"cannot open this Optuna storage ({type(exc).__name__}: {exc})") from None
    raise AssertionError("unreachable")


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


def fit_kwargs(kind: str, name: str, kwargs: dict[str, Any], classes: dict[str, type]) -> dict[str, Any]:
    """Keep the keys the chosen class takes. Keys of *another* sampler/pruner (a sweep file's
    TPE settings after ``sampler.name=random`` on the command line) are dropped with a
    warning; a key that no class takes is an error (a typo)."""
    import inspect

    def params(cls: type) -> set[str]:
        return set(inspect.signature(cls).parameters)

    mine = params(classes[name])
    known = set().union(*(params(c) for c in classes.values()))
    for k in kwargs:
        if k not in known:
            raise ConfigError(f"hydra.sweeper.{kind}.{k}", kwargs[k],
                              f"not an argument of {classes[name].__name__}; it takes: {', '.join(sorted(mine))}")
    dropped = sorted(k for k in kwargs if k not in mine)
    if dropped:
        logging.getLogger(__name__).warning("%s %s ignores %s (arguments of other %ss)",
                                            kind, name, ", ".join(dropped), kind)
    return {k: v for k, v in kwargs.items() if k in mine}


def make_sampler(spec: Mapping[str, Any], space: Any = None) -> optuna.samplers.BaseSampler:
    """``{name: tpe, seed: 0, ...keyword arguments of the sampler}``."""
    name = spec.get("name", "tpe")
    if name not in SAMPLERS:
        raise ConfigError("hydra.sweeper.sampler.name", name, f"must be one of {', '.join(SAMPLERS)}")
    kwargs = fit_kwargs("sampler", name, {k: v for k, v in dict(spec).items() if k != "name"},
                        _sampler_classes())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if name == "grid":
                return _GridSampler(_grid(space), **kwargs)
            return _sampler_classes()[name](**kwargs)
    except TypeError as exc:
        raise ConfigError("hydra.sweeper.sampler", dict(spec), str(exc)) from None


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
    from optuna.distributions import CategoricalDistribution, IntDistribution

    grid: dict[str, list[Any]] = {}
    if space is not None and space.conditional:
        raise ConfigError("hydra.sweeper.sampler.name", "grid",
                          "cannot search conditional parameters; use tpe or random")
    for key, dist in (space.params if space is not None else {}).items():
        if isinstance(dist, CategoricalDistribution):
            grid[key] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            grid[key] = list(range(dist.low, dist.high + 1, dist.step))
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
