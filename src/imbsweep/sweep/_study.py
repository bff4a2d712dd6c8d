"""Storage, samplers and pruners by name."""

from __future__ import annotations

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


def open_storage(url: str | None, state_dir: Path) -> Any:
    """An Optuna storage from a URL (any RDB URL Optuna accepts: ``sqlite:///…``,
    ``postgresql://…``, ``mysql://…``), a journal file path (``….log``), or, when ``url`` is
    empty, the local journal file under the state folder, which several local worker
    processes share safely (file locks, no "database is locked")."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if not url or str(url).endswith(JOURNAL_SUFFIXES):
        path = Path(url) if url else local_storage_path(state_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    for attempt in range(5):
        try:
            return RDBStorage(str(url), engine_kwargs=_engine_kwargs(str(url)))
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


def make_sampler(spec: Mapping[str, Any], space: Any = None) -> optuna.samplers.BaseSampler:
    """``{name: tpe, seed: 0, ...keyword arguments of the sampler}``."""
    kwargs = {k: v for k, v in dict(spec).items() if k != "name"}
    name = spec.get("name", "tpe")
    if name not in SAMPLERS:
        raise ConfigError("hydra.sweeper.sampler.name", name, f"must be one of {', '.join(SAMPLERS)}")
    S = optuna.samplers
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if name == "tpe":
                return S.TPESampler(**kwargs)
            if name == "random":
                return S.RandomSampler(**kwargs)
            if name == "gp":
                return S.GPSampler(**kwargs)
            if name == "cmaes":
                return S.CmaEsSampler(**kwargs)
            if name == "qmc":
                return S.QMCSampler(**kwargs)
            if name == "nsgaii":
                return S.NSGAIISampler(**kwargs)
            return S.GridSampler(_grid(space), **kwargs)
    except TypeError as exc:
        raise ConfigError("hydra.sweeper.sampler", dict(spec), str(exc)) from None


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
    kwargs = {k: v for k, v in dict(spec).items() if k != "name"}
    name = spec.get("name", "none")
    P = optuna.pruners
    classes = {"none": P.NopPruner, "median": P.MedianPruner, "percentile": P.PercentilePruner,
               "successive_halving": P.SuccessiveHalvingPruner, "hyperband": P.HyperbandPruner,
               "wilcoxon": P.WilcoxonPruner}
    if name not in classes:
        raise ConfigError("hydra.sweeper.pruner.name", name, f"must be one of {', '.join(PRUNERS)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return classes[name](**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError("hydra.sweeper.pruner", dict(spec), str(exc)) from None
