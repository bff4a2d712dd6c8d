"""The sweeper's config, registered in Hydra's ConfigStore as ``hydra/sweeper: imbsweep_optuna``."""

# No `from __future__ import annotations` here: Hydra's plugin scan runs this module without
# registering it in sys.modules, and dataclasses then cannot resolve string annotations.
from dataclasses import dataclass, field
from typing import Any, Optional  # noqa: UP035 - real types for OmegaConf

from hydra.core.config_store import ConfigStore


@dataclass
class ImbsweepOptunaSweeperConf:
    """Search-space syntax of the official Optuna sweeper, plus conditional parameters.

    Attributes:
        study_name: defaults to the sweep file's name (``sweep=tricks`` -> ``tricks``).
        storage: an Optuna storage URL (``postgresql://…``, ``sqlite:///…``) or a journal file
            path (``….log``); by default ``$OPTUNA_STORAGE`` (as the ``optuna`` CLI), else the
            local journal ``${state_dir}/optuna/journal.log``. The environment variable keeps
            credentials out of the overrides Hydra saves in the sweep folder.
        n_trials: the study's total target, across restarts (not "this many more"); 20 when
            unset. In a tournament: unset, or arms x ``trials_per_arm``.
        n_jobs: worker processes on this machine (this one and ``n_jobs - 1`` started ones);
            workers on other machines run the same command against a shared storage.
        sampler: ``{name: tpe|random|gp|cmaes|qmc|nsgaii|grid, seed: 0, …sampler kwargs}``.
        pruner: ``{name: none|median|percentile|successive_halving|hyperband|wilcoxon, …}``.
        params: ``key: expression`` (``choice``, ``range``, ``interval``, ``tag(log, …)``).
        conditional: ``key: {when: {param: value(s)}, space: expression}``.
        baseline: values of the baseline trial evaluated first (others: the config's
            defaults); null switches the baseline off. In a tournament it must be {} (each
            arm's first trial is the config's defaults for what the arm does not fix) or null.
        arms: a tournament: ``{arm name: {key: value or search expression}}``. Each arm is
            an Optuna study of its own (``<study_name>/<arm>``) with its own sampler and
            pruner over the sweep's space minus what it fixes; a search expression in an
            arm searches that key in this arm only.
        trials_per_arm: every arm's number of finished trials (complete, pruned, failed).
        baseline_arm: the arm the others are compared with; default ``ce`` if an arm has that
            name, else the first arm.
        posthoc_arms: ``{arm name: source arm}``: arms that train nothing of their own. Each
            is scored on its source arm's trials (the same models, the same budget) by the
            objective after post-hoc logit adjustment (``<objective>_posthoc``: the tau every
            run picks on validation from ``eval.posthoc_grid``); not counted in ``n_trials``.
            ``{arm name: {of: source arm, by: taunorm}}`` scores them after tau-normalisation
            instead (``<objective>_taunorm``, from ``eval.taunorm_grid``).
        max_failure_rate: stop once more than this fraction of ``n_trials`` has failed.
        heartbeat_interval: seconds between heartbeats on RDB storages (PostgreSQL, MySQL,
            SQLite URLs), so that a trial whose worker died on another machine is re-queued;
            null turns heartbeats off. Local workers are also watched through their pid.
    """

    _target_: str = "hydra_plugins.imbsweep_optuna_sweeper.optuna_sweeper.ImbsweepOptunaSweeper"
    study_name: Optional[str] = None  # noqa: UP045
    storage: Optional[str] = "${oc.env:OPTUNA_STORAGE,null}"  # noqa: UP045 - the optuna CLI's variable
    n_trials: Optional[int] = None  # noqa: UP045
    n_jobs: int = 1
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe", "seed": 0})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "none"})
    params: dict[str, Any] = field(default_factory=lambda: {})
    conditional: dict[str, Any] = field(default_factory=lambda: {})
    baseline: Optional[dict[str, Any]] = field(default_factory=lambda: {})  # noqa: UP045
    max_failure_rate: float = 0.5
    heartbeat_interval: Optional[int] = 60  # noqa: UP045
    arms: dict[str, Any] = field(default_factory=lambda: {})
    trials_per_arm: Optional[int] = None  # noqa: UP045
    baseline_arm: Optional[str] = None  # noqa: UP045
    posthoc_arms: dict[str, Any] = field(default_factory=lambda: {})


ConfigStore.instance().store(group="hydra/sweeper", name="imbsweep_optuna",
                             node=ImbsweepOptunaSweeperConf, provider="imbsweep_optuna_sweeper")
