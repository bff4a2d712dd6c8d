"""The sweeper's config, registered in Hydra's ConfigStore as ``hydra/sweeper: imbsweep_optuna``,
and the samplers as the config group ``hydra/sweeper/sampler`` (``tpe``, ``random``, ``cmaes``,
``nsgaii``, ``grid``, ``qmc``, ``gp``), as the official Hydra Optuna sweeper registers them."""

# No `from __future__ import annotations` here: Hydra's plugin scan runs this module without
# registering it in sys.modules, and dataclasses then cannot resolve string annotations.
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Optional  # noqa: UP035 - real types for OmegaConf

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# -- samplers: the official plugin's typed settings; None leaves a setting at Optuna's default.
# The seed is 0 (the official plugin's is None, a random seed): a sweep run twice asks for the
# same trials (``seed: null`` for a random one). Every option also has the other samplers'
# settings, null: a sweep file's TPE settings do not stop `hydra/sweeper/sampler=random` on the
# command line (the sweep ignores them, with a warning naming them).


@dataclass
class SamplerConfig:
    _target_: str = MISSING
    seed: Optional[int] = 0  # noqa: UP045


@dataclass
class TPESamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.TPESampler.html"""

    _target_: str = "optuna.samplers.TPESampler"
    consider_prior: Optional[bool] = None  # noqa: UP045
    prior_weight: Optional[float] = None  # noqa: UP045
    consider_magic_clip: Optional[bool] = None  # noqa: UP045
    consider_endpoints: Optional[bool] = None  # noqa: UP045
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False
    group: bool = False  # with multivariate: a conditional space is sampled per group of parameters
    warn_independent_sampling: Optional[bool] = None  # noqa: UP045
    constant_liar: bool = True
    constraints_func: Optional[Any] = None  # noqa: UP045


@dataclass
class RandomSamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.RandomSampler.html"""

    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class CmaEsSamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.CmaEsSampler.html"""

    _target_: str = "optuna.samplers.CmaEsSampler"
    x0: Optional[dict[str, Any]] = None  # noqa: UP045
    sigma0: Optional[float] = None  # noqa: UP045
    n_startup_trials: Optional[int] = None  # noqa: UP045
    independent_sampler: Optional[Any] = None  # noqa: UP045
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    restart_strategy: Optional[Any] = None  # noqa: UP045
    popsize: Optional[int] = None  # noqa: UP045
    inc_popsize: Optional[int] = None  # noqa: UP045
    use_separable_cma: bool = False
    with_margin: Optional[bool] = None  # noqa: UP045
    lr_adapt: Optional[bool] = None  # noqa: UP045
    source_trials: Optional[Any] = None  # noqa: UP045


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.NSGAIISampler.html"""

    _target_: str = "optuna.samplers.NSGAIISampler"
    population_size: int = 50
    mutation_prob: Optional[float] = None  # noqa: UP045
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5
    constraints_func: Optional[Any] = None  # noqa: UP045


@dataclass
class GridSamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.GridSampler.html
    (its search space is made from ``hydra.sweeper.params`` at run time)."""

    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True


@dataclass
class QMCSamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.QMCSampler.html"""

    _target_: str = "optuna.samplers.QMCSampler"
    qmc_type: str = "sobol"
    scramble: bool = False
    independent_sampler: Optional[Any] = None  # noqa: UP045
    warn_asynchronous_seeding: bool = True
    warn_independent_sampling: bool = True


@dataclass
class GPSamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.GPSampler.html"""

    _target_: str = "optuna.samplers.GPSampler"
    independent_sampler: Optional[Any] = None  # noqa: UP045
    n_startup_trials: int = 10
    deterministic_objective: bool = False
    constraints_func: Optional[Any] = None  # noqa: UP045
    warn_independent_sampling: bool = True


@dataclass
class MOTPESamplerConfig(SamplerConfig):
    """Removed in Optuna 4.0 (the official plugin's config fails the same way)."""

    _target_: str = "hydra_plugins.imbsweep_optuna_sweeper.config.raise_motpe_removed"


def raise_motpe_removed(*args: Any, **kwargs: Any) -> Any:
    raise ValueError("The 'motpe' sampler was removed in Optuna 4.0. Use 'hydra/sweeper/sampler=tpe' instead. "
                     "TPESampler now handles multi-objective optimization.")


def _taking_the_others(configs: dict[str, type]) -> dict[str, Any]:
    """Each sampler config with the other samplers' settings too, typed ``Any`` and null (each
    one a subclass of the same name, in this module, so that a config pickles)."""
    settings = dict.fromkeys(f.name for c in configs.values() for f in fields(c) if not f.name.startswith("_"))
    lenient = {}
    for name, cls in configs.items():
        own = {f.name for f in fields(cls)}
        others = [(k, Optional[Any], None) for k in settings if k not in own]  # noqa: UP045
        lenient[name] = make_dataclass(cls.__name__, others, bases=(cls,), namespace={"__doc__": cls.__doc__})
        lenient[name].__module__ = __name__
    return lenient


SAMPLER_CONFIGS = _taking_the_others({
    "tpe": TPESamplerConfig, "random": RandomSamplerConfig, "cmaes": CmaEsSamplerConfig,
    "nsgaii": NSGAIISamplerConfig, "grid": GridSamplerConfig, "qmc": QMCSamplerConfig, "gp": GPSamplerConfig,
    "motpe": MOTPESamplerConfig,
})
globals().update({cls.__name__: cls for cls in SAMPLER_CONFIGS.values()})


@dataclass
class ImbsweepOptunaSweeperConf:
    """The official Optuna sweeper's settings, then imbsweep's own (docs/sweeps.md: "Sweep settings").

    Attributes:
        sampler: the config group ``hydra/sweeper/sampler`` (``tpe`` by default), each with its
            sampler's typed settings.
        direction: ``minimize`` or ``maximize``, or a list of them (one per returned value);
            null: imbsweep's app takes ``objective.direction`` (``objective.metrics``), any other
            app ``minimize``.
        storage: an Optuna storage URL (``postgresql://…``, ``sqlite:///…``) or a journal file
            path (``….log``); by default ``$OPTUNA_STORAGE`` (as the ``optuna`` CLI), else the
            local journal ``<state_dir>/optuna/journal.log``: studies persist and resume.
        study_name: defaults to the sweep file's name (``sweep=tricks`` -> ``tricks``), else the
            app's job name.
        n_trials: the study's total target, across restarts (not "this many more"); 20 when
            unset. In a tournament: unset, or arms x ``trials_per_arm``.
        n_jobs: worker processes on this machine (this one and ``n_jobs - 1`` started ones, each
            running the same command); workers on other machines run that command against a
            shared storage. With GPUs visible (``CUDA_VISIBLE_DEVICES``, else every GPU of the
            machine), the workers are spread over them round-robin, each seeing only its own
            (as ``cuda:0``).
        workers_per_gpu: at most this many workers share one GPU (``n_jobs`` is lowered to
            GPUs x this, with a warning); null: no limit.
        max_failure_rate: stop once more than this fraction of ``n_trials`` has failed.
        params: ``key: expression`` (``choice``, ``range``, ``interval``, ``tag(log, …)``).
        search_space: the deprecated form of ``params`` (``{type: float, low, high, step, log}``).
        custom_search_space: ``module.function(cfg, trial)`` called after the trial's parameters
            are sampled; what it suggests on the trial is passed to the job as overrides.
        objective_names: the names the returned value(s) are recorded under in MLflow and
            Optuna; null: imbsweep's app's objective metrics, else ``objective`` (one value) or
            ``objective_0``, ``objective_1``, … .
        seed_key: the config key ``imbsweep compare --reseed`` sets to 1..K (null: imbsweep's
            app's ``trainer.seed``; another app without one cannot be re-seeded).
        state_dir: where the local state lives (Optuna journal, MLflow store) for an app
            without a ``state_dir`` key; default ``mlruns`` in the launch folder.
        tracking_uri: the MLflow store for an app without ``tracking.uri``; default
            ``$MLFLOW_TRACKING_URI``, else the local store in the state folder.
        sampler seed: see the sampler configs (0 by default, not random).
        pruner: ``{name: none|median|percentile|successive_halving|hyperband|wilcoxon, …}``.
        conditional: ``key: {when: {param: value(s)}, space: expression}``.
        baseline: the first trial's values: ``{}`` the config's defaults of the searched keys,
            ``{key: value}`` given ones, null none. ``auto``: on for imbsweep's app and in a
            tournament (each arm's first trial), off for a plain study of another app.
        arms: a tournament: ``{arm name: {key: value or search expression}}``. Each arm is
            an Optuna study of its own (``<study_name>/<arm>``) with its own sampler and
            pruner over the sweep's space minus what it fixes.
        trials_per_arm: every arm's number of finished trials (complete, pruned, failed).
        baseline_arm: the arm the others are compared with; default ``ce`` if an arm has that
            name, else the first arm.
        posthoc_arms: ``{arm name: source arm}``: arms scored on their source arm's trials by
            the objective's post-hoc twin (``<objective>_posthoc``; ``{of: arm, by: taunorm}``:
            ``<objective>_taunorm``); not counted in ``n_trials``.
        heartbeat_interval: seconds between heartbeats on RDB storages, so that a trial whose
            worker died on another machine is re-queued; null turns heartbeats off.
        reproducible: the same command gives the same trials on every run, whatever the
            workers' timing: each arm (a plain study: the study) runs one trial at a time, and
            each trial is asked of a sampler seeded with ``sampler.seed`` + its number (with the
            same torch threads per trial: set ``trainer.num_threads`` to compare runs with
            different ``n_jobs``). A worker waits while every arm below its budget has a trial
            running, so ``n_jobs`` above the number of arms is lowered to it. Needs
            ``sampler.seed``; off by default (Optuna's way: parallel workers steer each other's
            samplers as results arrive).
        trial: set by the sweeper on each job it launches (which trial, which MLflow run);
            never set it yourself.
    """

    _target_: str = "hydra_plugins.imbsweep_optuna_sweeper.optuna_sweeper.ImbsweepOptunaSweeper"
    _recursive_: bool = False  # the sweeper makes its sampler itself (a seed per worker, the grid's space)
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])

    # -- the official plugin's settings
    sampler: SamplerConfig = MISSING
    direction: Any = None
    storage: Optional[str] = "${oc.env:OPTUNA_STORAGE,null}"  # noqa: UP045 - the optuna CLI's variable
    study_name: Optional[str] = None  # noqa: UP045
    n_trials: Optional[int] = None  # noqa: UP045
    n_jobs: int = 1
    max_failure_rate: float = 0.5
    params: Optional[dict[str, Any]] = None  # noqa: UP045
    search_space: Optional[dict[str, Any]] = None  # noqa: UP045
    custom_search_space: Optional[str] = None  # noqa: UP045

    # -- imbsweep's own
    workers_per_gpu: Optional[int] = None  # noqa: UP045
    objective_names: Optional[list[str]] = None  # noqa: UP045
    seed_key: Optional[str] = None  # noqa: UP045
    state_dir: Optional[str] = None  # noqa: UP045
    tracking_uri: Optional[str] = None  # noqa: UP045
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "none"})
    conditional: dict[str, Any] = field(default_factory=lambda: {})
    baseline: Any = "auto"
    arms: dict[str, Any] = field(default_factory=lambda: {})
    trials_per_arm: Optional[int] = None  # noqa: UP045
    baseline_arm: Optional[str] = None  # noqa: UP045
    posthoc_arms: dict[str, Any] = field(default_factory=lambda: {})
    heartbeat_interval: Optional[int] = 60  # noqa: UP045
    # untyped (Any), checked by imbsweep (sweep/_settings.py): a bool field would read 2 as true
    reproducible: Any = False
    trial: Any = None  # (untyped: a job's override sets it whole)


_STORE = ConfigStore.instance()
_STORE.store(group="hydra/sweeper", name="imbsweep_optuna", node=ImbsweepOptunaSweeperConf,
             provider="imbsweep_optuna_sweeper")
for _name, _node in SAMPLER_CONFIGS.items():
    _STORE.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="imbsweep_optuna_sweeper")
