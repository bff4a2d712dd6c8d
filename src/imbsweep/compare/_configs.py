"""What each arm's best trial searched, in a few words (``lr=0.0031 batch=128 tau=1.2``),
and the sweep's own settings read back from its parent run's ``sweep.yaml``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ImbsweepError
from ..results import StudyRecord, choices_of, download_text
from ..trick import short_number

#: params never shown as "the configuration" (they name the trick, or are plumbing)
NOT_CONFIG = ("loss.name", "loss.class_weights", "resampling.name", "trainer.num_threads", "trainer.seed",
              "tracking.", "state_dir", "data.", "model._target_", "loss._target_", "optimizer._target_",
              "scheduler._target_", "resampling._target_", "augment._target_", "stage2._target_")
_SHORT = {"loss.reweight_from_epoch": "drw_from"}  # beside trick.SHORT_KEYS


def short(key: str) -> str:
    from ..trick import short_key

    return short_key(key, _SHORT)


def reported_metric(metric: str) -> str:
    """``val/balanced_acc`` -> ``test/balanced_acc`` (what the comparison reports)."""
    return "test/" + metric[len("val/"):] if metric.startswith("val/") else metric


def sweep_conf(record: StudyRecord) -> dict[str, Any]:
    """The parent run's ``sweep.yaml`` (the sweeper's settings: params, arms, n_jobs, ...);
    empty without one. Read once per record."""
    import yaml

    if record.sweep_settings is not None:
        return dict(record.sweep_settings)
    text = download_text(record.client, record.parent_run_id, "sweep.yaml") if record.parent_run_id else None
    try:
        conf = yaml.safe_load(text or "") or {}
    except yaml.YAMLError:
        conf = {}
    conf = conf if isinstance(conf, dict) else {}
    record.sweep_settings = conf
    return dict(conf)


def sweep_jobs(record: StudyRecord) -> int:
    """The study's ``n_jobs`` (its parent run's ``sweep.yaml``), else 1."""
    try:
        return max(1, int(sweep_conf(record).get("n_jobs", 1)))
    except (TypeError, ValueError):
        return 1


def arm_fixed(record: StudyRecord) -> dict[str, set[str]]:
    """arm -> the keys it fixes (``arms`` of the sweep), so the config column shows only what
    the arm's own search chose."""
    from optuna.distributions import BaseDistribution

    from ..sweep._space import parse

    def fixes(key: str, value: Any) -> bool:  # a search expression is searched, not fixed
        try:
            return not isinstance(parse(key, value, where=None), BaseDistribution)
        except ImbsweepError:
            return True

    arms = sweep_conf(record).get("arms") or {}
    return {str(a): {str(k) for k, x in v.items() if fixes(str(k), x)} for a, v in arms.items()
            if isinstance(v, Mapping)} if isinstance(arms, Mapping) else {}


def varying_params(trials: Any) -> list[str]:
    """The params whose value differs between the study's trials: what was searched."""
    out = []
    for col in trials.columns:
        if not col.startswith("params."):
            continue
        key = col[len("params."):]
        if key.startswith(NOT_CONFIG) or key in NOT_CONFIG:
            continue
        if trials[col].dropna().nunique() > 1:
            out.append(key)
    return out


def sweep_space(record: StudyRecord, arm: str | None = None) -> Any:
    """The study's search space (an arm's, in a tournament), from its parent run's
    ``sweep.yaml``; None without one."""
    from ..sweep._space import SearchSpace

    conf = sweep_conf(record)
    if not conf.get("params") and not conf.get("conditional") and not conf.get("arms"):
        return None
    conditional = conf.get("conditional") or {}
    when_keys = {str(k): None for spec in conditional.values() if isinstance(spec, Mapping)
                 for k in dict(spec.get("when") or {})}
    arms = conf.get("arms") or {}
    texts = []
    if arm is not None and isinstance(arms, Mapping) and isinstance(arms.get(arm), Mapping):
        from ..sweep._space import written_override

        texts = [written_override(str(k), v) for k, v in arms[arm].items()]
    try:  # conditions are decided on each run's own values (searched_keys), not here
        return SearchSpace.build(conf.get("params"), conditional, [], config_values=when_keys,
                                 arm_overrides=texts)
    except (ImbsweepError, TypeError, ValueError):
        return None


def searched_keys(space: Any, row: Mapping[str, Any]) -> list[str]:
    """The keys the sweep sampled for this run: its unconditional params, and the
    conditional ones whose condition held on the run's own values (group keys such as
    ``loss`` name the trick, unless an arm searches them: ``resampling`` of a resampling arm)."""
    import yaml

    groups = choices_of(row)

    def value(key: str) -> Any:
        if key in groups:
            return groups[key]
        raw = row.get(f"params.{key}")
        return yaml.safe_load(raw) if isinstance(raw, str) else raw

    when_keys = {k for cond in space.conditional.values() for k in cond.when}
    known = {**space.fixed_for_conditions, **space.fixed, **{k: value(k) for k in when_keys},
             **{k: value(k) for k in space.params}}
    keys = list(space.params)
    for key, cond in space.conditional.items():
        if cond.active(known):
            known[key] = value(key)
            keys.append(key)
    return [k for k in keys if k in space.params or (k not in groups and k not in NOT_CONFIG
                                                     and not k.startswith(NOT_CONFIG))]


def describe_config(row: Mapping[str, Any], keys: Sequence[str]) -> str:
    """``lr=0.0031 batch=128 tau=1.2``: the searched values of one run."""
    parts = []
    groups = choices_of(row)
    for key in keys:
        v = groups.get(key, row.get(f"params.{key}"))
        if v is None or (isinstance(v, float) and math.isnan(v)) or v in ("None", "null"):
            continue
        try:
            f = float(v)
            text = v if f.is_integer() and "." not in str(v) else short_number(f)
        except (TypeError, ValueError):
            text = str(v)
        parts.append(f"{short(key)}={text}")
    return " ".join(parts)
