"""What a sweep checks before it touches a study or a store: its settings, where it writes,
its search space against the config and the data, its baseline, and, on resume, the space
the study was searched over. Each problem is one :class:`ConfigError` naming the key, the
value and what is allowed; nothing has been created, asked or started when it is raised."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
)

from .._stores import redact
from ..errors import ConfigError
from ..names import JOURNAL_SUFFIXES
from ._arms import Arm, in_config, inside, keys_decided
from ._space import describe

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from ._app import App
    from ._settings import Settings
    from ._tournament import Tournament

log = logging.getLogger(__name__)
BATCH = "trainer.batch_size"


def check_stores(app: App, settings: Settings, state: Path, sweep_dir: Path, study_name: str) -> None:
    """The state folder, the MLflow tracking URI (a server must answer), where Hydra writes the
    jobs' folders and the Optuna storage (a journal file's folder must be writable; a database URL
    needs its driver)."""
    from .._stores import check_folder, driver_error, sqlalchemy_url

    env = app.env
    if app.own:
        from .._config import validate_state_dir, validate_tracking

        validate_state_dir(env)
        validate_tracking(env)
    else:  # an app without state_dir and tracking: hydra.sweeper's, or MLflow's variable
        import os

        from .._stores import CONNECT_TIMEOUT_S, check_tracking_uri

        check_folder("hydra.sweeper.state_dir", state, shown=settings.state_dir or str(state))
        if env.tracking.uri:
            check_tracking_uri(str(env.tracking.uri), "hydra.sweeper.tracking_uri" if settings.tracking_uri
                               or not os.environ.get("MLFLOW_TRACKING_URI") else "MLFLOW_TRACKING_URI",
                               CONNECT_TIMEOUT_S)
    # where Hydra writes each job's folder (it makes it at the first job, after the study opened)
    check_folder("hydra.sweep.dir", sweep_dir.expanduser().resolve(), shown=str(sweep_dir), create=False)
    from .._client import deleted_experiment, make_client, tracking_uri

    uri = tracking_uri(env.tracking, state)
    if not uri.startswith("sqlite:///") or Path(uri[len("sqlite:///"):]).is_file():  # (a new store has none)
        exp = make_client(uri).get_experiment_by_name(study_name)
        if exp is not None and exp.lifecycle_stage == "deleted":
            raise ConfigError("hydra.sweeper.study_name", study_name, deleted_experiment(exp))
    url = settings.storage
    key = "hydra.sweeper.storage"
    if not url or url.endswith(JOURNAL_SUFFIXES):
        if url and Path(url).is_dir():
            raise ConfigError(key, url, "is a folder; name the journal file in it (e.g. optuna/journal.log)")
        if url:
            check_folder(key, Path(url).expanduser().resolve().parent, shown=url)
        return
    if "://" not in url:
        raise ConfigError(key, url, "must be a database URL (postgresql://…, sqlite:///…) or a journal file "
                          f"ending in {', '.join(JOURNAL_SUFFIXES)}")
    missing = driver_error(sqlalchemy_url(url))
    if missing:
        raise ConfigError(key, redact(url), missing)
    if url.startswith("sqlite:///"):
        db = url[len("sqlite:///"):]
        if db and db != ":memory:":
            check_folder(key, Path(db).expanduser().resolve().parent, shown=url)


def check_space(arms: list[Arm], config: DictConfig, config_loader: Any) -> None:
    """Every searched key is a key of the config (a plain study; a tournament's arms check
    theirs as they are built), and a searched config group lists options that exist."""
    from omegaconf import OmegaConf

    choices = OmegaConf.select(config, "hydra.runtime.choices", default={}) or {}
    for arm in arms:
        where = f" (arm {arm.name})" if arm.name is not None else ""
        dists = arm.space.distributions()
        for key, dist in dists.items():
            if key in choices:
                _check_group(config_loader, key, dist, where)
        if arm.name is None:
            for key in keys_decided(arm.space):
                if not key.startswith("+") and not in_config(key, config, choices):
                    parent = key.rpartition(".")[0]
                    node = OmegaConf.select(config, parent, default=None) if parent else config
                    keys = [str(k) for k in node if not str(k).startswith("_")] if OmegaConf.is_dict(node) else None
                    has = f"; {parent or 'the config'} has: {', '.join(keys)}" if keys is not None \
                        else f"; {parent} is not a config node"
                    raise ConfigError(key, describe(dists[key]),
                                      f"is not a key of the config{has} (a key it lacks is searched with +: "
                                      f"'+{key}=choice(…)')")


def _check_group(loader: Any, group: str, dist: BaseDistribution, where: str) -> None:
    if not isinstance(dist, CategoricalDistribution):
        raise ConfigError(group, describe(dist), f"is a config group{where}: search its options with choice(…)")
    if loader is None or not hasattr(loader, "get_group_options"):
        return
    options = list(loader.get_group_options(group))
    unknown = [str(c) for c in dist.choices if c is not None and str(c) not in options]
    if unknown:
        raise ConfigError(group, describe(dist), f"{', '.join(unknown)}: no such option of the config group "
                          f"{group}{where}; options: {', '.join(sorted(options))}")


def check_baseline(baseline: Any, arms: list[Arm]) -> None:
    """A plain study's ``baseline:`` values: each names a searched parameter and lies inside
    its space (the config's defaults outside it are left to the sampler, with a warning)."""
    if not baseline or arms[0].name is not None:
        return
    if not isinstance(baseline, Mapping):
        raise ConfigError("hydra.sweeper.baseline", baseline, "must map searched parameters to values, or be null")
    dists = arms[0].space.distributions()
    for key, value in baseline.items():
        where = f"hydra.sweeper.baseline.{key}"
        if str(key) not in dists:
            raise ConfigError(where, value, "is not a searched parameter; searched: " + (", ".join(dists) or "none"))
        if inside(str(key), dists[str(key)], value) != (True, value):
            raise ConfigError(where, value, f"lies outside the space searched, {describe(dists[str(key)])}; the "
                              "baseline is the study's first trial, so it must be a point of the space")


def check_data(config: DictConfig, arms: list[Arm], worker: str | None) -> None:
    """What needs the data, built (and cached) now as the first trial would: the objective
    is a metric a run on it logs, and no batch size exceeds its training split."""
    from .._config import validate_batch_size, validate_objective_logged
    from .._paths import cache_dir
    from ..data import DEFAULT_CACHE_MB, load_dataset

    cfg = config
    ds = load_dataset(cfg.data, cache_dir(cfg), cfg.get("dataset_cache_mb", DEFAULT_CACHE_MB))
    validate_objective_logged(cfg, ds)
    for arm in arms:
        space = arm.space
        dist = space.params.get(BATCH) or (space.conditional[BATCH].distribution if BATCH in space.conditional
                                           else None)
        if dist is None:  # fixed: by the sweep file, an arm or the command line, else the config's default
            fixed = {**space.fixed_for_conditions, **space.fixed}
            validate_batch_size(fixed.get(BATCH, cfg.trainer.get("batch_size")), ds, explicit=BATCH in fixed)
            continue
        biggest = max(dist.choices, key=lambda v: v if isinstance(v, int) else 0) \
            if isinstance(dist, CategoricalDistribution) else getattr(dist, "high", None)
        try:
            validate_batch_size(biggest, ds, key=BATCH)
        except ConfigError as exc:
            where = f" in arm {arm.name}" if arm.name is not None else ""
            raise ConfigError(BATCH, describe(dist), f"searches {biggest}{where}, more than the {len(ds.y_train)} "
                              f"examples of the training split of {ds.name} (one batch would be the whole "
                              "split)") from exc.__cause__
    if not worker:  # (the sweep that started a worker checked its space)
        check_values(arms, config, ds)


def corners(dist: BaseDistribution) -> list[Any]:
    """The values of a space that bound what a trial can be given: an interval's ends, a numeric
    choice's smallest and largest, every other choice."""
    if isinstance(dist, CategoricalDistribution):
        values = list(dist.choices)
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) == len(values) and values:
            return sorted({min(numbers), max(numbers)})
        return values
    return [dist.low, dist.high]  # type: ignore[attr-defined]


def check_values(arms: list[Arm], config: DictConfig, ds: Any) -> None:
    """Every searched key of imbsweep's app at each corner of its space (:func:`corners`) is a
    value a run takes, as a trial would build it (``training.prepare`` on the arm's config and
    the data, on the CPU): a space with invalid values (``loss.gamma`` in [-5, -1], a batch size
    of 0 among the choices) is one line before the study opens, not failed trials. A config
    group searched with ``choice`` is checked by its options' names (``check_space``); a
    conditional key where the arm's fixed values decide that its condition holds."""
    from omegaconf import OmegaConf, open_dict, read_write

    from ..training import prepare

    seen: set[tuple[str, str, str]] = set()  # (key, value, its group as configured): arms share most
    for arm in arms:
        base = arm.config if arm.config is not None else config
        choices = OmegaConf.select(base, "hydra.runtime.choices", default={}) or {}
        where = f" (arm {arm.name})" if arm.name is not None else ""
        cfg = OmegaConf.create({k: v for k, v in base.items_ex(resolve=False) if k != "hydra"})
        with open_dict(cfg), read_write(cfg), _as_a_trial(base, keys_decided(arm.space)):
            cfg.trainer.device, cfg.trainer.amp, cfg.trainer.num_threads = "cpu", False, None
            dists = arm.space.distributions()
            for key in keys_decided(arm.space):  # (a conditional one where what the arm fixes makes it hold)
                dist = dists[key]
                bare = key.lstrip("+")
                if bare in choices or OmegaConf.select(cfg, bare, default=None) is None and not key.startswith("+"):
                    continue  # a group (its options' names are checked), or a key the arm does not have
                before = OmegaConf.select(cfg, bare, default=None)
                group = bare.partition(".")[0]
                for value in corners(dist):
                    OmegaConf.update(cfg, bare, value, force_add=True)
                    done = (bare, repr(value), OmegaConf.to_yaml(cfg[group]) if group in cfg else "")
                    if done in seen:
                        continue
                    seen.add(done)
                    try:
                        prepare(cfg, dataset=ds)
                    except ConfigError as exc:
                        if exc.key == bare:
                            raise ConfigError(key, describe(dist), f"searches {value!r}{where}, which a run does "
                                              f"not take: {exc.allowed}") from None
                        other = next((k for k in dists if k.lstrip("+") == exc.key), None)
                        if other is None:  # another key's problem: the arm's own config, reported as it is
                            raise
                        raise ConfigError(other, describe(dists[other]), f"is searched{where}, but a run does not "
                                          f"take it: {exc.allowed}") from None
                OmegaConf.update(cfg, bare, before, force_add=True)


@contextmanager
def _as_a_trial(base: DictConfig, searched: Iterable[str]) -> Iterator[None]:
    """Hydra's view of the job inside, as a trial of this arm has it: its composed config, whose
    command line (``hydra.overrides.task``) also sets the searched keys. What the app reads from
    it (which settings of a model option a user's own model is given) is then decided as in the
    trial. Hydra's launchers set it the same way (``HydraConfig.instance().set_config``)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict, read_write

    if "hydra" not in base:  # (no Hydra node: nothing to read)
        yield
        return
    job = copy.deepcopy(base)
    with read_write(job.hydra), open_dict(job.hydra):
        task = list(OmegaConf.select(job, "hydra.overrides.task", default=[]) or [])
        job.hydra.overrides.task = task + [f"{key}=" for key in searched]
    hydra = HydraConfig.instance()
    before = hydra.cfg
    hydra.set_config(job)
    try:
        yield
    finally:
        hydra.cfg = before


def check_kind(t: Tournament, storage: Any) -> set[str]:
    """A tournament and a plain study never share a name (their runs would mix in one
    MLflow experiment), nor a post-hoc arm a trained arm's; checked under the budget lock,
    before anything is written.
    Returns the names of the storage's studies."""
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    tournament = t.has_arms
    arm_studies = sorted(n for n in names if n.startswith(t.study_name + "/"))
    if tournament and t.study_name in names:
        raise ConfigError("hydra.sweeper.study_name", t.study_name,
                          "exists as a study without arms; a tournament needs a name of its own")
    if not tournament and arm_studies:
        raise ConfigError("hydra.sweeper.study_name", t.study_name,
                          f"is a tournament ({', '.join(arm_studies)}); a study without arms needs "
                          "a name of its own")
    for name, source in t.posthoc_arms.items():
        if f"{t.study_name}/{name}" in names:  # its trained trials would mix with the re-scored ones
            raise ConfigError(f"hydra.sweeper.posthoc_arms.{name}", source,
                              f"study {t.study_name!r} already has a trained arm {name!r}; give the "
                              "post-hoc arm another name, or the sweep another study_name")
    return names


def drop_new_studies(storage: Any, arms: list[Arm], existed: set[str]) -> None:
    """Delete the studies of ``arms`` that did not exist before this sweep started (created
    under its budget lock, so no other worker saw them) and still hold nothing but their
    enqueued first trial: a sweep stopped by bad input leaves no empty study behind."""
    for arm in arms:
        if arm.study_name in existed or arm.study is None:
            continue
        try:
            trials = arm.study.get_trials(deepcopy=False)
            if all(t.state == optuna.trial.TrialState.WAITING for t in trials):
                optuna.delete_study(study_name=arm.study_name, storage=storage)
        except Exception as exc:  # noqa: BLE001 - the error that stopped the sweep is the one to show
            log.warning("could not remove the empty study %s: %s", arm.study_name, exc)


def preflight(t: Tournament, app: App, settings: Settings, config: DictConfig, config_loader: Any, state: Path,
              sweep_dir: Path, worker: str | None) -> None:
    """Every check above that needs no study, cheapest first, each given what it checks;
    called as the sweep is built (the data: imbsweep's app only)."""
    check_space(t.arms, config, config_loader)
    check_baseline(t.baseline, t.arms)
    check_stores(app, settings, state, sweep_dir, t.study_name)
    if app.own:
        check_data(config, t.arms, worker)
