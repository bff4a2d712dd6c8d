"""The app a sweep sweeps: imbsweep's own training app, or any other Hydra app whose task
function returns a float (or a sequence, one per objective).

What a sweep needs of its app is gathered here once: the objectives (names and directions),
where its record lives (the state folder and the MLflow store), the config key that re-seeds a
run, and the command that runs the app again (the sweep's workers, ``compare --reseed``).
imbsweep's app has all of it in its config (``objective``, ``state_dir``, ``tracking``,
``trainer.seed``); any other app takes it from ``hydra.sweeper.*``, with the official Optuna
sweeper's defaults where it has one (``direction: minimize``)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .._paths import state_dir
from ..errors import ConfigError
from ._settings import Settings

log = logging.getLogger(__name__)
OWN_SEED_KEY = "trainer.seed"


def is_own_app(task_function: Any) -> bool:
    """Whether ``task_function`` is imbsweep's training app (``imbsweep.app``)."""
    return bool(getattr(task_function, "imbsweep_app", False))


def objective_names(directions: Sequence[str], names: Sequence[str] | None) -> list[str]:
    """``hydra.sweeper.objective_names``, else ``objective`` (one) or ``objective_0``, …"""
    if names:
        return [str(n) for n in names]
    return ["objective"] if len(directions) == 1 else [f"objective_{i}" for i in range(len(directions))]


@dataclass(frozen=True)
class App:
    """What a sweep knows of its app (see the module docstring).

    Attributes:
        own: imbsweep's own training app.
        objectives: ``[(name, direction), ...]``.
        env: ``{state_dir, tracking: {...}}``: imbsweep's app's config itself, or a node of the
            same shape made from ``hydra.sweeper.*`` (what the sweep's recording reads).
        seed_key: the config key ``compare --reseed`` sets (None: the app cannot be re-seeded).
        program: the command that runs this app with the sweep's command line, without its
            overrides (``[python, app.py]``, ``[python, -m, pkg.app]``); None when this
            process did not start as that command (a sweep run from Python).
        argv: the command line's arguments after the program (Hydra's flags and overrides).
        name: ``imbsweep`` for imbsweep's app, else the app's job name (``hydra.job.name``).
        cwd: the launch folder (where ``program`` runs).
        config_dir: the folder of the app's primary config, when it is one on disk
            (``export`` writes into its ``best/``).
    """

    own: bool
    objectives: list[tuple[str, str]]
    env: DictConfig
    seed_key: str | None
    program: list[str] | None
    argv: list[str]
    name: str = "imbsweep"
    cwd: str = ""
    config_dir: str | None = None
    source: str | None = None  # the folder of the task function's source file (its git checkout's commit)

    @classmethod
    def of(cls, task_function: Any, config: DictConfig, settings: Settings, study_name: str) -> App:
        own = is_own_app(task_function)
        directions = settings.directions()
        if own:
            from .._config import objective_metrics, validate_objective

            validate_objective(config)
            objectives = objective_metrics(config)
            mine = [d for _, d in objectives]
            if directions is not None and directions != mine:
                raise ConfigError("hydra.sweeper.direction", settings.direction,
                                  f"imbsweep's app takes its direction from objective.direction ({', '.join(mine)})")
            if settings.objective_names is not None and list(settings.objective_names) != [m for m, _ in objectives]:
                raise ConfigError("hydra.sweeper.objective_names", settings.objective_names,
                                  "imbsweep's app records its objective under objective.metric "
                                  f"({', '.join(m for m, _ in objectives)}); set that instead")
            env = config
            seed_key: str | None = settings.seed_key or OWN_SEED_KEY
        else:
            directions = directions or ["minimize"]
            if settings.objective_names is not None and len(settings.objective_names) != len(directions):
                raise ConfigError("hydra.sweeper.objective_names", settings.objective_names,
                                  f"must name each of the {len(directions)} direction(s) {directions}")
            objectives = list(zip(objective_names(directions, settings.objective_names), directions, strict=True))
            env = generic_env(settings, study_name)
            seed_key = settings.seed_key
        if seed_key is not None:
            check_seed_key(seed_key, config)
        program, argv = command(config)
        name = "imbsweep" if own else str(OmegaConf.select(config, "hydra.job.name", default="app"))
        cwd = str(OmegaConf.select(config, "hydra.runtime.cwd", default=None) or os.getcwd())
        return cls(own, objectives, env, seed_key, program, argv, name, cwd, primary_config_dir(config),
                   source_dir(task_function))


def generic_env(settings: Settings, study_name: str) -> DictConfig:
    """The ``{state_dir, tracking}`` node of an app without them: the state folder
    (``hydra.sweeper.state_dir``, else ``mlruns`` in the launch folder, made absolute: a job that
    changes its working folder still finds it) and the MLflow store
    (``hydra.sweeper.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else the local store there)."""
    from ..names import STATE_DIR

    uri = settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    return OmegaConf.create({
        "state_dir": str(state_dir(settings.state_dir or STATE_DIR)),
        "tracking": {"uri": uri, "experiment": study_name, "artifacts": True,
                     "flush_every_s": 30.0, "connect_timeout_s": 8}})


def check_seed_key(key: str, config: DictConfig) -> None:
    """A seed key is a key of the app's config with an integer (or null) value."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(config, parent, default=None) if parent else config
    if not OmegaConf.is_dict(node) or leaf not in node:
        raise ConfigError("hydra.sweeper.seed_key", key, "is not a key of the app's config (compare --reseed "
                          "sets it to 1..K)")
    value = node.get(leaf)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError("hydra.sweeper.seed_key", key, f"holds {value!r}; a seed key holds an integer")


#: set by imbsweep's command line (``imbsweep run`` / ``imbsweep sweep``): its program
PROGRAM: list[str] | None = None


def command(config: DictConfig) -> tuple[list[str] | None, list[str]]:
    """``(program, argv)``: the command this process runs, split before its arguments.

    ``imbsweep run`` / ``sweep`` (``PROGRAM`` set by the CLI) is ``python -m imbsweep run``;
    any other app is the interpreter's own command line (``sys.orig_argv``: ``python app.py``,
    ``python -m pkg.app``), when its arguments are the ones Hydra read (``sys.argv``).
    Otherwise (a sweep started from Python or a test runner) there is no program."""
    argv = list(sys.argv[1:])
    if PROGRAM is not None:
        return list(PROGRAM), argv
    orig = list(getattr(sys, "orig_argv", []))
    n = len(argv)
    if not orig or len(orig) <= n or orig[len(orig) - n:] != argv or "-c" in orig[1:len(orig) - n]:
        return None, argv
    program = [sys.executable, *orig[1:len(orig) - n]]
    if not _same_overrides(argv, config):
        return None, argv
    return program, argv


def _same_overrides(argv: list[str], config: DictConfig) -> bool:
    """Whether ``argv`` is the command line Hydra composed this sweep from: its overrides (the
    arguments that are neither flags nor a flag's value) are those the config records, less the
    ``hydra.mode=MULTIRUN`` that ``-m`` adds (a test runner's arguments are not)."""
    overrides = OmegaConf.select(config, "hydra.overrides", default=None)
    if overrides is None:
        return False
    # as written: a worker's own hydra.sweep.subdir=w1_${hydra.job.num} resolves only in a job
    lists = OmegaConf.to_container(overrides, resolve=False)
    assert isinstance(lists, dict)
    recorded = [str(o) for o in [*(lists.get("task") or []), *(lists.get("hydra") or [])]
                if o != "hydra.mode=MULTIRUN"]
    given = [t for t in argv if not t.startswith("-") and ("=" in t or t.startswith("~"))]
    return sorted(given) == sorted(recorded)


def primary_config_dir(config: DictConfig) -> str | None:
    """The folder of the app's primary config (Hydra's ``main`` config source) when it is a
    folder on disk, else None (a package's configs, or none)."""
    for source in OmegaConf.select(config, "hydra.runtime.config_sources", default=None) or []:
        if source.get("provider") == "main" and source.get("schema") == "file" and source.get("path"):
            return str(Path(str(source["path"])).resolve())
    return None


def source_dir(task_function: Any) -> str | None:
    """The folder of the file that defines ``task_function`` (None when there is none)."""
    import inspect

    try:
        path = inspect.getsourcefile(task_function)
    except TypeError:
        return None
    return str(Path(path).resolve().parent) if path else None


def state_folder(env: DictConfig) -> Path:
    return state_dir(env.get("state_dir"))
