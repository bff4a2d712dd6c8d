"""Imbsweep's own app's jobs on Hydra's basic launcher without callbacks, with Hydra's
composition cached (:class:`CachedJobs`); every other job goes through the launcher
(``_launch``). Public APIs only.

Hydra's launcher composes every job's config from scratch (``ConfigLoader.load_sweep_config``:
the defaults list, every file, every merge); most of a sweep's jobs differ from another only in
the values the sampler drew. Here Hydra composes once per set of *group* and *hydra* overrides
(``loss=focal``: an arm; the job's trial, ``hydra.sweeper.trial``, is set on each job's hydra
node instead), a job's config is a copy of that with its value overrides applied through
OmegaConf's public ``update`` (what Hydra's own composition does with them), its
``hydra.overrides``, ``job.override_dirname``, ``id`` and ``num`` set as Hydra sets them, and it
runs through Hydra's own ``run_job`` (its folder, the ``.hydra`` files, its logging, ``chdir``,
``env_set``). An override this cannot apply is left to Hydra's whole composition (its own
error, word for word). ``tests/sweep/test_jobs.py`` checks every job against Hydra's launcher;
what it saves is in docs/benchmarks.md.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ._usertask import TRIAL_KEY

log = logging.getLogger(__name__)


class CachedJobs:
    """Hydra's basic launcher, with each set of group options composed once (see the module
    docstring)."""

    def __init__(self, launcher: Any, config: DictConfig) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.launcher, self.master, self.context = launcher, config, launcher.hydra_context
        self.loader, self.task_function = self.context.config_loader, launcher.task_function
        self.parser = OverridesParser.create()
        self._groups: dict[str, bool] = {}  # a key: whether a config group has its name
        self._bases: dict[tuple[str, ...], DictConfig] = {}
        self.composed: list[tuple[str, ...]] = []  # the compositions Hydra made, in order
        self._started = False

    def _is_base(self, o: Any) -> bool:
        """Whether Hydra composes ``o`` into the defaults list (a group option) or applies it
        to the hydra node: such overrides pick the cached base; the rest are applied to it."""
        if o.is_hydra_override() or o.is_sweep_override() or o.package is not None:
            return True
        group = self._groups.get(o.key_or_group)
        if group is None:
            group = self._groups[o.key_or_group] = bool(self.loader.repository.group_exists(o.key_or_group))
        return group and not isinstance(o.value(), dict)

    def _compose(self, lines: Sequence[str]) -> DictConfig:
        """What Hydra's launcher does for a job: a whole composition."""
        cfg = self.loader.load_sweep_config(self.master, list(lines))
        self.composed.append(tuple(lines))
        return cfg

    def compose(self, overrides: Sequence[str], idx: int) -> DictConfig:
        """The job's config as ``config_loader.load_sweep_config`` composes it, with
        ``hydra.job.id`` and ``num`` = ``idx`` as the basic launcher sets them."""
        trial = [o for o in overrides if o.startswith(TRIAL_KEY + "=")]
        parsed = self.parser.parse_overrides([o for o in overrides if o not in trial])
        values = [o for o in parsed if not self._is_base(o)]
        key = tuple(str(o.input_line) for o in parsed if o not in values)
        base = self._bases.get(key)
        if base is None:
            base = self._bases[key] = self._compose(key)
        cfg = copy.deepcopy(base)
        try:
            apply_values(cfg, values)
        except Exception:  # noqa: BLE001 - Hydra's own composition applies it, or says why not
            cfg = self._compose([*key, *(str(o.input_line) for o in values)])
        app = [o for o in parsed if not o.is_hydra_override()]
        hydra = cfg.hydra
        with read_write(hydra), open_dict(hydra):
            hydra.overrides.task = [o.input_line for o in app]
            before = OmegaConf.to_container(base.hydra.overrides.hydra, resolve=False)  # (w1_${hydra.job.num})
            assert isinstance(before, list)
            hydra.overrides.hydra = [*before, *trial]
            hydra.sweeper.trial = trial[-1].partition("=")[2] if trial else None  # (URL-safe base64: as parsed)
            c = hydra.job.config.override_dirname
            hydra.job.override_dirname = overrides_dirname(app, list(c.exclude_keys), str(c.item_sep), str(c.kv_sep))
            hydra.job.id = idx
            hydra.job.num = idx
        return cfg

    def run(self, overrides: Sequence[str], idx: int) -> Any:
        """One job, as ``BasicLauncher.launch`` runs it."""
        from hydra.core.utils import configure_log, filter_overrides, run_job, setup_globals

        if not self._started:  # what the basic launcher does before its jobs
            setup_globals()
            configure_log(self.master.hydra.hydra_logging, self.master.hydra.verbose)
            Path(str(self.master.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
            self._started = True
        log.info("Launching 1 jobs locally")
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        config = self.compose(overrides, idx)
        try:
            return run_job(hydra_context=self.context, task_function=self.task_function, config=config,
                           job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        finally:
            configure_log(self.master.hydra.hydra_logging, self.master.hydra.verbose)


def apply_values(cfg: DictConfig, overrides: Sequence[Any]) -> None:
    """Value overrides (``key=v``, ``+key=v``, ``++key=v``, ``~key``) applied to a composed
    config with OmegaConf's public calls, as Hydra's composition applies them; anything it does
    not take as Hydra would (a missing key, a ``+`` onto an existing value) raises, and the
    caller leaves the job to Hydra's whole composition."""
    for o in overrides:
        key, value = str(o.key_or_group), o.value()
        if o.is_delete():
            if value is not None or OmegaConf.select(cfg, key, throw_on_missing=False) is None:
                raise KeyError(key)
            parent, _, last = key.rpartition(".")
            with open_dict(cfg):
                node = OmegaConf.select(cfg, parent) if parent else cfg
                del node[last]
        elif o.is_add():
            if OmegaConf.select(cfg, key, throw_on_missing=False) is not None and not isinstance(value, dict | list):
                raise KeyError(key)
            OmegaConf.update(cfg, key, value, merge=True, force_add=True)
        elif o.is_force_add():
            OmegaConf.update(cfg, key, value, merge=True, force_add=True)
        else:
            OmegaConf.update(cfg, key, value, merge=True)


def overrides_dirname(overrides: Sequence[Any], exclude_keys: list[str], item_sep: str, kv_sep: str) -> str:
    """``hydra.job.override_dirname`` as Hydra computes it: the task's overrides but the excluded
    keys, sorted, joined with ``item_sep``, ``=`` written ``kv_sep``."""
    lines = sorted(str(o.input_line) for o in overrides if o.key_or_group not in exclude_keys)
    return re.sub("=", kv_sep, item_sep.join(lines))


__all__ = ["CachedJobs", "apply_values", "overrides_dirname"]
