"""Imbsweep's own app's jobs on Hydra's basic launcher without callbacks: the launcher's work
done from a cached base (:class:`CachedJobs`: ~150-170 ms less a trial, ~6-7% of an unpruned
default tournament trial on one worker, docs/benchmarks.md); every other job goes through the
launcher (``_launch``).

- Hydra composes once per set of *group* and *hydra* overrides (the job's trial, ``hydra.sweeper.trial``,
  is set on each job's hydra node instead); plain group files (``loss=ce resampling=sqrt``) are put
  together from each option's part (:meth:`CachedJobs._parts`). The hydra node and each group no
  value override writes into are lent read-only to the job (imbsweep's app writes into none), the
  rest copied; the value overrides are applied by Hydra's own code; ``hydra.overrides``,
  ``job.override_dirname``, ``id``, ``num`` and ``runtime.output_dir`` are set as Hydra sets them;
- the job runs as in ``run_job``: its folder, the ``.hydra`` files (the same text: :mod:`._jobtext`),
  its logging, ``chdir``, ``env_set``, ``HydraConfig`` set and restored, the task's exception
  caught into the ``JobReturn``. ``tests/sweep/test_jobs.py`` checks it all against Hydra's launcher.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, flag_override, open_dict, read_write

from ._joblog import JobLogging
from ._jobtext import EntryText, container, dump, has_null, save, simple_override
from ._usertask import TRIAL_KEY

log = logging.getLogger(__name__)
_PER_JOB = frozenset({"overrides", "job", "runtime", "sweeper"})  # the hydra node's entries a job sets


# long: the steps of Hydra's basic launcher and run_job, one method each, checked against them (test_jobs.py)
class CachedJobs:
    """Hydra's basic launcher and ``run_job``, composing each job from a cached base (see
    the module docstring)."""

    def __init__(self, launcher: Any, config: DictConfig) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.launcher, self.master, self.context = launcher, config, launcher.hydra_context
        self.loader, self.task_function = self.context.config_loader, launcher.task_function
        self.parser, self._parsed = OverridesParser.create(), dict[str, Any]()
        self._groups: dict[str, bool] = {}  # a key: whether a config group has its name
        self._texts = EntryText()  # the .hydra files' entries that stay as they were
        self._bases: dict[tuple[str, ...], DictConfig] = {}
        self._assembled: dict[tuple[str, ...], tuple[DictConfig, dict[str, DictConfig]]] = {}  # see _parts
        self._sources: dict[tuple[str, ...], DictConfig] = {}  # see _source
        self._chosen: dict[str, Any] = {}  # the lent hydra node's choices as they were (see compose)
        self.composed: list[tuple[str, ...]] = []  # the bases Hydra composed, in order
        self._plain: dict[tuple[str, str], bool] = {}  # (group, option): a plain file of a top-level group
        self._laters: dict[tuple[tuple[str, ...], str], tuple[Any] | None] = {}  # see _later
        self._lists: dict[tuple[str, ...], list[Any] | None] = {}  # Hydra's defaults lists, see _defaults
        self._started, self._logs = False, JobLogging(config)
        self._lent: DictConfig | None = None
        self._hydra_overrides = list(OmegaConf.to_container(config.hydra.overrides.hydra, resolve=False))  # type: ignore[arg-type]
        self._lent_body: list[tuple[DictConfig, str, Any]] = []  # (owner, key, its readonly flag)

    # -- composing ------------------------------------------------------------------------
    def _parse(self, overrides: Sequence[str]) -> list[Any]:
        out = []
        for text in overrides:
            o = self._parsed.get(text)
            if o is None:
                o = simple_override(text)  # (a sampled value: new text every trial)
            if o is None:
                (o,) = self.parser.parse_overrides([text])
                if len(self._parsed) < 10_000:
                    self._parsed[text] = o
            out.append(o)
        return out

    def _is_base(self, o: Any) -> bool:
        """Whether Hydra composes ``o`` into the defaults list (a group option) or applies it
        to the hydra node: such overrides pick the cached base; the rest are applied to it."""
        if o.is_hydra_override() or o.is_sweep_override():
            return True
        group = self._groups.get(o.key_or_group)
        if group is None:
            group = self._groups[o.key_or_group] = bool(self.loader.repository.group_exists(o.key_or_group))
        return group and not isinstance(o.value(), dict)

    def _base(self, key: list[Any]) -> DictConfig:
        """The config Hydra composes from the overrides ``key`` (group options, hydra keys), put
        together from :meth:`_parts` (plain files of top-level groups: what a group holds does
        not depend on the others' options, as tests/sweep/test_jobs.py checks)."""
        lines = tuple(o.input_line for o in key)
        base = self._bases.get(lines)
        if base is not None:
            return base
        base, sources = self._parts(key)
        if sources:  # put together in a config of its own
            base = copy.deepcopy(base)
            with open_dict(base), read_write(base.hydra), open_dict(base.hydra):
                for group, single in sources.items():
                    base[group] = single[group]
                    base.hydra.runtime.choices[group] = single.hydra.runtime.choices[group]
        self._bases[lines] = base
        return base

    def _parts(self, key: list[Any]) -> tuple[DictConfig, dict[str, DictConfig]]:
        """``(root, sources)``: the base of ``key`` is ``root`` (the base of the other overrides)
        with each group of ``sources`` and its choice taken from there (:meth:`_source`); a job
        takes the parts as they are (:meth:`compose`): no base per combination of options."""
        lines = tuple(o.input_line for o in key)
        parts = self._assembled.get(lines)
        if parts is not None:
            return parts
        plain = [o for o in key if self._plain_file(o)]
        fixed = [o for o in key if o not in plain]
        if plain:
            root = self._base(fixed)
            if all(o.key_or_group in root and o.key_or_group in root.hydra.runtime.choices for o in plain):
                sources: dict[str, DictConfig] = {}
                for o in plain:
                    source = self._source(fixed, o, compose=len(plain) > 1)  # (one: Hydra's own job)
                    if source is None:
                        break
                    sources[str(o.key_or_group)] = source
                else:
                    parts = (root, sources)
        if parts is None:
            parts = (self._compose(lines), {})
        self._assembled[lines] = parts
        return parts

    def _compose(self, lines: tuple[str, ...]) -> DictConfig:
        """What Hydra's launcher does for a job: a whole composition."""
        base = self.loader.load_sweep_config(self.master, list(lines))
        self.composed.append(lines)
        return base

    def _source(self, fixed: list[Any], o: Any, compose: bool) -> DictConfig | None:
        """A config of ``o``'s group on top of ``fixed`` and its choice: :meth:`_single`, else
        (``compose``) Hydra's composition; None: the job composes itself (and its error)."""
        lines = (*[f.input_line for f in fixed], o.input_line)
        source = self._sources.get(lines)
        if source is None:
            source = self._single(fixed, o)
            if source is None:
                if not compose:
                    return None
                try:
                    source = self._compose(lines)
                except Exception:  # noqa: BLE001 - the job's own composition raises it
                    return None
            self._sources[lines] = source
        return source

    def _single(self, fixed: list[Any], o: Any) -> DictConfig | None:
        """The group of the plain file ``o`` (``loss=focal``) on top of ``fixed``, uncomposed:
        Hydra merges the defaults list's files in order, so it is the option's file merged with
        what later files write into the group (a composition without it, ``~loss``, once per
        group); only where :meth:`_later` shows that this is so, else None."""
        group, option = o.key_or_group, o.value()
        later = self._later(fixed, group)
        if later is None or self._schema(group, option):
            return None
        merged = self._merged(group, option, later[0])
        if merged is None:
            return None
        source = OmegaConf.create({"hydra": {"runtime": {"choices": {group: option}}}})
        with flag_override(source, "no_deepcopy_set_nodes", True):
            source[group] = merged
        return source

    def _merged(self, group: str, option: str, later: Any) -> Any:
        """The group's subtree: ``group/option``'s file merged with ``later``; None if that fails."""
        loaded = self.loader.repository.load_config(f"{group}/{option}")
        if loaded is None:
            return None
        merged = OmegaConf.create()
        try:
            with flag_override(merged, "no_deepcopy_set_nodes", True):  # as Hydra's composition merges
                merged.merge_with({group: loaded.config})
                if later is not None:
                    merged.merge_with({group: later})
        except Exception:  # noqa: BLE001 - Hydra's own composition reports it
            return None
        return merged[group]

    def _schema(self, group: str, option: str) -> bool:
        """Whether a ConfigStore schema of the same name is merged with the file (Hydra still does)."""
        try:
            return bool(self.loader.repository.get_schema_source().is_config(f"{group}/{option}"))
        except Exception:  # noqa: BLE001 - cannot tell: compose it
            return True

    def _later(self, fixed: list[Any], group: str) -> tuple[Any] | None:
        """``(subtree,)``: what the files after ``group``'s in ``fixed``'s defaults list write into
        it (``(None,)``: nothing); None where that does not give the group (it is not once in the
        list, its option not a plain file, an earlier file or an interpolated defaults list writes
        there, a null in the later writes, or the current option put together differs)."""
        lines = tuple(f.input_line for f in fixed)
        key = (lines, group)
        if key not in self._laters:
            found = self._find_later(lines, group)
            if found is not None:  # checked on the option the composition holds
                root = self._base(fixed)
                current = root.hydra.runtime.choices.get(group) if group in root else None
                mine = self._merged(group, str(current), found[0]) if current is not None else None
                if mine is None or OmegaConf.to_container(mine) != OmegaConf.to_container(root[group]):
                    found = None
            self._laters[key] = found
        return self._laters[key]

    def _defaults(self, fixed: tuple[str, ...]) -> list[Any] | None:
        """Hydra's defaults list for ``fixed`` (once per set of overrides); None if it fails."""
        from hydra.types import RunMode

        if fixed not in self._lists:
            try:  # as load_sweep_config takes them: unresolved (a worker's hydra.sweep.subdir=w1_${hydra.job.num})
                hydra_overrides = list(OmegaConf.to_container(self.master.hydra.overrides.hydra))  # type: ignore[arg-type]
                self._lists[fixed] = self.loader.compute_defaults_list(
                    self.master.hydra.job.config_name, [*hydra_overrides, *fixed], RunMode.RUN).defaults
            except Exception:  # noqa: BLE001 - Hydra's own composition reports it
                self._lists[fixed] = None
        return self._lists[fixed]

    def _find_later(self, fixed: tuple[str, ...], group: str) -> tuple[Any] | None:
        defaults = self._defaults(fixed)
        if defaults is None:
            return None
        at = [i for i, d in enumerate(defaults) if d.package == group and str(d.config_path).startswith(group + "/")]
        if len(at) != 1 or not self._is_plain(group, str(defaults[at[0]].config_path)[len(group) + 1:]):
            return None
        from hydra.core.default_element import GroupDefault

        for i, d in enumerate(defaults):
            loaded = self.loader.repository.load_config(d.config_path) if d.config_path is not None else None
            if loaded is not None and any(isinstance(x, GroupDefault) and x.is_interpolation()
                                          for x in loaded.defaults_list or []):
                return None  # a choice that follows another group's: swapping one can change the list
            if i >= at[0]:
                continue
            package = d.package or ""
            if package == group or package.startswith(group + "."):
                return None
            if package == "" and (loaded is None or group in loaded.config):
                return None
        try:
            without = self._compose((*fixed, f"~{group}"))
        except Exception:  # noqa: BLE001 - a defaults list that needs the group: compose each option
            return None
        later = without.get(group)
        if later is not None and has_null(OmegaConf.to_container(later) if OmegaConf.is_config(later) else later):
            return None
        return (later,)

    def _plain_file(self, o: Any) -> bool:
        """Whether ``o`` picks a plain file of a top-level group (see :meth:`_base`)."""
        if o.is_hydra_override() or o.is_add() or o.is_delete() or o.is_force_add() or o.package is not None:
            return False
        group, option = o.key_or_group, o.value()
        if not isinstance(option, str) or "/" in group:
            return False
        return self._is_plain(group, option)

    def _is_plain(self, group: str, option: str) -> bool:
        """Whether ``group/option`` is a plain file: no defaults list, written into its group."""
        known = self._plain.get((group, option))
        if known is None:
            try:
                res = self.loader.repository.load_config(f"{group}/{option}")
            except Exception:  # noqa: BLE001 - Hydra's own composition reports it
                res = None
            known = self._plain[(group, option)] = res is not None and not res.defaults_list \
                and dict(res.header).get("package") in (None, "", group)
        return known

    def compose(self, overrides: Sequence[str], idx: int) -> DictConfig:
        """The job's config as ``config_loader.load_sweep_config`` composes it, with
        ``hydra.job.id`` and ``num`` = ``idx`` as the basic launcher sets them."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname

        self._give_back()  # (a job interrupted between compose and the end of run)
        # the job's trial (_usertask.trial_override): set on its hydra node, not one composition a job
        trial = [o for o in overrides if o.startswith(TRIAL_KEY + "=")]
        overrides = [o for o in overrides if not o.startswith(TRIAL_KEY + "=")]
        parsed = self._parse(overrides)
        values = [o for o in parsed if not self._is_base(o)]  # applied to the base (the rest pick it)
        base, sources = self._parts([o for o in parsed if o not in values])
        # a new root: the hydra node and each group no value override writes into lent, the rest copied
        keys = [str(k) for k in base if k != "hydra"]
        written = {str(o.key_or_group).split(".")[0] for o in values}
        content = {k: v for k in keys if k in written
                   for _, v in sources.get(k, base).items_ex(resolve=False, keys=[k])}
        body = DictConfig(content=content)  # (what OmegaConf.masked_copy makes)
        cfg = OmegaConf.create()
        with flag_override(cfg, "no_deepcopy_set_nodes", True):
            cfg["hydra"] = base.hydra
            for k in keys:
                if k in content:
                    cfg[k] = body._get_node(k)
                else:
                    owner = sources.get(k, base)
                    node = owner._get_node(k)
                    assert node is not None
                    self._lent_body.append((owner, k, node._get_node_flag("readonly")))
                    cfg[k] = node
                    node._set_flag("readonly", True)
        self._lent = base  # the hydra node goes back to it after the job (give_back)
        choices = base.hydra.runtime.choices
        self._chosen = {g: choices[g] for g in sources}
        with read_write(choices), open_dict(choices):
            for g, single in sources.items():
                choices[g] = single.hydra.runtime.choices[g]
        OmegaConf.copy_cache(from_config=base, to_config=cfg)
        OmegaConf.set_struct(cfg, True)
        OmegaConf.set_readonly(cfg.hydra, False)
        try:
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        except BaseException:
            self._give_back()
            raise
        app = [o for o in parsed if not o.is_hydra_override()]
        job = cfg.hydra.job
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in app]
            cfg.hydra.overrides.hydra = [*self._hydra_overrides, *trial]
            cfg.hydra.sweeper.trial = trial[-1].partition("=")[2] if trial else None
            job.override_dirname = get_overrides_dirname(
                overrides=app, kv_sep=job.config.override_dirname.kv_sep,
                item_sep=job.config.override_dirname.item_sep,
                exclude_keys=job.config.override_dirname.exclude_keys)
            job.id = idx
            job.num = idx
        return cfg

    def _give_back(self) -> None:
        """The lent nodes are their owners' children again, as they were (copying a base never follows a job's root)."""
        if self._lent is not None:
            node = self._lent._get_node("hydra")
            assert isinstance(node, DictConfig)
            node._set_parent(self._lent)
            choices = node.runtime.choices
            with read_write(choices), open_dict(choices):
                for g, option in self._chosen.items():
                    choices[g] = option
            with read_write(node), open_dict(node):  # the base as it was: no trial of its own
                node.sweeper.trial = None
                node.overrides.hydra = list(self._hydra_overrides)
            self._chosen = {}
            self._lent = None
        for owner, key, flag in self._lent_body:
            lent = owner._get_node(key)
            assert lent is not None
            lent._set_flag("readonly", flag)
            lent._set_parent(owner)
        self._lent_body = []

    # -- running --------------------------------------------------------------------------
    # long: run_job's steps in run_job's order, so that the two can be read side by side
    def run(self, overrides: Sequence[str], idx: int) -> Any:
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.utils import (
            JobReturn,
            JobRuntime,
            JobStatus,
            _flush_loggers,
            env_override,
            filter_overrides,
            setup_globals,
        )

        if not self._started:  # what the basic launcher does before its jobs
            setup_globals()
            Path(str(self.master.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
            # (the launcher configures Hydra's logging before each launch; after the first job
            # it is already so, restored at the end of the previous one)
            self._logs.sweep()
            self._started = True
        log.info("Launching 1 jobs locally")
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        config = self.compose(overrides, idx)

        old_cwd = os.getcwd()
        instance = HydraConfig.instance()
        orig_hydra_cfg = instance.cfg
        # HydraConfig.get() is the job's hydra node, read-only, its root the job's config (as
        # Hydra's masked copy is, for interpolations from the hydra node into the config)
        OmegaConf.set_readonly(config.hydra, True)
        instance.cfg = config  # type: ignore[assignment]
        chdir = False
        try:
            output_dir = str(OmegaConf.select(config, "hydra.sweep.dir"))
            output_dir = os.path.join(output_dir, str(OmegaConf.select(config, "hydra.sweep.subdir")))
            with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
                config.hydra.runtime.output_dir = os.path.abspath(output_dir)
            ret = JobReturn()
            # the task's config: the job's own nodes without the hydra node, moved to a root of
            # their own rather than copied (compose made them for this job; Hydra's deep copy
            # kept the job's config apart from the task's, which nothing reads after this)
            task_cfg = OmegaConf.create()
            with flag_override(task_cfg, "no_deepcopy_set_nodes", True):
                for k in [str(k) for k in config if k != "hydra"]:
                    task_cfg[k] = config._get_node(k)
            OmegaConf.copy_cache(from_config=config, to_config=task_cfg)  # as Hydra's deep copy carries it
            OmegaConf.set_struct(task_cfg, True)
            ret.cfg = task_cfg
            ret.overrides = list(config.hydra.overrides.task)
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            chdir = config.hydra.job.chdir
            if chdir is None:  # Hydra's default: only before version_base 1.2 (with a warning there)
                from hydra import version

                chdir = not version.base_at_least("1.2")
            if chdir:
                os.chdir(output_dir)
                ret.working_dir = output_dir
            else:
                ret.working_dir = os.getcwd()
            self._logs.configure(config.hydra.job_logging, config.hydra.verbose)
            if config.hydra.output_subdir is not None:
                out = Path(config.hydra.runtime.output_dir) / Path(config.hydra.output_subdir)
                lent = {key for _, key, _ in self._lent_body}
                save(self._texts.text(task_cfg, lambda k: k not in lent), "config.yaml", out)
                save(self._texts.text(config.hydra, _PER_JOB.__contains__, under="hydra"), "hydra.yaml", out)
                save(dump(container(config.hydra.overrides.task)), "overrides.yaml", out)
            with env_override(config.hydra.job.env_set):
                try:
                    ret.return_value = self.task_function(task_cfg)
                    ret.status = JobStatus.COMPLETED
                except Exception as e:  # noqa: BLE001 - as Hydra's run_job: the sweeper reads it
                    ret.return_value = e
                    ret.status = JobStatus.FAILED
            ret.task_name = JobRuntime.instance().get("name")
            _flush_loggers()
            return ret
        finally:
            instance.cfg = orig_hydra_cfg
            self._give_back()
            if chdir:
                os.chdir(old_cwd)
            self._logs.sweep()
