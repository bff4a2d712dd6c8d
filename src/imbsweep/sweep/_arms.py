"""A sweep's arms: a tournament's (``hydra.sweeper.arms``), each with the search space left
once its values are applied, or the one arm of a plain study; each arm's first trial."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from ..errors import ConfigError
from ..names import ATTR_BASELINE
from ..posthoc import POSTHOC_KINDS, POSTHOC_METRICS
from ._counts import posthoc_metric
from ._settings import STUDY_NAME_MAX, Settings
from ._space import SearchSpace, describe, parse, written_override

log = logging.getLogger(__name__)


@dataclass
class Arm:
    """One arm of a tournament (or, with ``name`` None, the whole sweep of a plain study)."""

    name: str | None
    study_name: str
    space: SearchSpace
    budget: int
    values: dict[str, Any] = field(default_factory=dict)  # what the arm fixes (or searches), as written
    defaults: dict[str, Any] = field(default_factory=dict)  # each searched key's value in its config
    config: Any = None  # the config the arm's trials start from (composed with what it fixes)
    study: Any = None  # optuna.Study, opened in Sweep.run
    seeded: bool = False  # its sampler seeded at this process's first ask


def inside(key: str, dist: Any, value: Any) -> tuple[bool, Any]:
    """``(True, value)`` when ``value`` lies in ``dist``; a number outside an interval is
    moved to its nearest bound (a weight decay of 0 under ``tag(log, interval(1e-6, …))``
    starts at 1e-6, about 0); ``(False, None)`` otherwise."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return (value in dist.choices), value
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number:
        return False, None
    try:
        if dist._contains(dist.to_internal_repr(value)):
            return True, value
    except (TypeError, ValueError):  # 0 under a log interval
        pass
    from optuna.distributions import FloatDistribution, IntDistribution

    if (isinstance(dist, FloatDistribution) and dist.step is None) or \
            (isinstance(dist, IntDistribution) and dist.step == 1 and isinstance(value, int)):
        bound = dist.low if value < dist.low else dist.high
        log.info("%s: the config's %r lies outside %r; the first trial starts at %r", key, value, dist, bound)
        return True, bound
    return False, None


def baseline_params(space: SearchSpace, defaults: Mapping[str, Any], baseline: Mapping[str, Any],
                    ) -> dict[str, Any]:
    """The baseline trial: the sweep's ``baseline`` values, else the config's defaults, each
    kept only when it lies inside its search space (a default outside a ``choice`` is left to
    the sampler, with a warning naming the key)."""
    out: dict[str, Any] = {}

    def take(key: str, dist: Any, value: Any) -> bool:
        if key in baseline:  # an explicit baseline value is used as given, or not at all
            ok = inside(key, dist, value) == (True, value)
        else:
            ok, value = inside(key, dist, value)
        if ok:
            out[key] = value
        else:
            log.warning("hydra.sweeper: %s=%r (%s) is outside its search space %s; the sampler picks "
                        "it in the first trial", key, value, "the baseline's" if key in baseline
                        else "the config's default", describe(dist))
        return ok

    for key, dist in space.params.items():
        value = baseline.get(key, defaults.get(key))
        if value is not None:
            take(key, dist, value)
    known = {**space.fixed_for_conditions, **space.fixed, **out}
    for key, cond in space.conditional.items():
        if cond.active(known) and (key in baseline or defaults.get(key) is not None) \
                and take(key, cond.distribution, baseline.get(key, defaults.get(key))):
            known[key] = out[key]
    return out


def config_defaults(config: Any, choices: Mapping[str, Any], keys: Any) -> dict[str, Any]:
    """Each of ``keys``' value in the composed ``config`` (group keys: the chosen option)."""
    out = {}
    for key in keys:
        if key in choices:
            out[key] = choices[key]
        else:
            value = OmegaConf.select(config, key, default=None)
            if value is not None and not OmegaConf.is_config(value):
                out[key] = value
    return out


def build_arms(settings: Settings, config: Any, arguments: list[str], config_loader: Any,
               study_name: str) -> list[Arm]:
    """A tournament's arms (``settings`` validated): each arm's search space is the sweep's
    space with the arm's values applied as if typed before the command line's overrides (a
    plain value fixes a key, a search expression searches it in this arm only), conditions
    decided on the config that the arm composes to."""
    from optuna.distributions import BaseDistribution

    per_arm = int(settings.trials_per_arm or 0)
    conditional = settings.conditional
    cond_keys = {str(k) for spec in conditional.values()
                 if isinstance(spec, Mapping) for k in dict(spec.get("when") or {})}
    # the command line's fixed values, less those of conditional keys (they apply only
    # where their condition holds): what every arm's config is composed with
    cli_fixed = [o for o in arguments if not _is_sweep(o) and o.partition("=")[0].lstrip("+~") not in conditional]
    arms = []
    seen_keys: set[str] = set()
    for name, values in settings.arms.items():
        name = str(name)
        where = f"hydra.sweeper.arms.{name}"
        if not name or "/" in name or "${" in name or name != name.strip() or len(name) > STUDY_NAME_MAX:
            raise ConfigError("hydra.sweeper.arms", name, f"an arm's name must be non-empty, at most {STUDY_NAME_MAX} "
                              "characters, without '/', '${' or surrounding spaces")
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError(where, values, "must map config keys to values or search expressions")
        values = {str(k): v for k, v in (values or {}).items()}
        texts, fixed = [], []
        for key, value in values.items():
            text = written_override(key, value)
            texts.append(text)
            if not isinstance(parse(key, text.partition("=")[2], where=where), BaseDistribution):
                fixed.append(text)  # (parsed here so that a bad expression names the arm)
        arm_cfg, arm_choices = _compose(config, config_loader, name, fixed, cli_fixed)
        space = SearchSpace.build(settings.params, conditional, arguments, arm_overrides=texts,
                                  config_values=_none_for_missing(
                                      config_defaults(arm_cfg, arm_choices, cond_keys), cond_keys))
        _check_keys(name, space, arm_cfg, arm_choices)
        seen_keys.update(k for k in cond_keys if in_config(k, arm_cfg, arm_choices))
        seen_keys.update(space.names())
        arms.append(Arm(name, f"{study_name}/{name}", space, per_arm, values,
                        config_defaults(arm_cfg, arm_choices, list(space.names())), config=arm_cfg))
    for key, spec in conditional.items():
        for cond_key in dict(spec.get("when") or {}) if isinstance(spec, Mapping) else {}:
            if str(cond_key) not in seen_keys:
                raise ConfigError(f"hydra.sweeper.conditional.{key}.when", str(cond_key),
                                  "names no key of any arm's config and no searched parameter")
    return arms

def _check_keys(arm: str, space: SearchSpace, cfg: Any, choices: Mapping[str, Any]) -> None:
    """A key the arm searches must exist in the config the arm composes to (else every
    trial of the arm would fail to compose); a conditional key is checked where its
    condition is decided by what the arm fixes."""
    for key in keys_decided(space):
        if not key.startswith("+") and not in_config(key, cfg, choices):
            raise ConfigError(f"hydra.sweeper.arms.{arm}", key,
                              "searches a key that this arm's config does not have (add it with + on the "
                              "command line, or fix it in the arms that have it)")

def _compose(config: Any, config_loader: Any, arm: str, overrides: list[str],
             cli_fixed: list[str]) -> tuple[Any, Mapping[str, Any]]:
    """The config one of the arm's trials starts from (the arm's fixed values, then the
    command line's), and its group choices; an unknown key or option names the arm."""
    if config_loader is None:
        choices = OmegaConf.select(config, "hydra.runtime.choices", default={}) or {}
        return config, choices
    from hydra.errors import HydraException

    try:
        cfg = config_loader.load_sweep_config(config, [*overrides, *cli_fixed])
    except HydraException as exc:
        msg = " ".join(str(exc).split())
        raise ConfigError(f"hydra.sweeper.arms.{arm}", overrides, f"does not compose: {msg}") from None
    return cfg, OmegaConf.select(cfg, "hydra.runtime.choices", default={}) or {}

def posthoc_arms(spec: Any, arms: list[Arm],
                 objectives: list[tuple[str, str]], own: bool = True) -> tuple[dict[str, str], dict[str, str]]:
    """``{name: source arm}`` and ``{name: kind}``: arms scored on their source arm's trials
    after a post-hoc step every run scans, ``name: source`` for post-hoc logit adjustment
    or ``name: {of: source, by: kind}`` (``by: taunorm``: tau-normalisation); they need the
    objective's ``_<kind>`` twin, which every run of imbsweep's app logs for the headline metrics
    (see ``posthoc.posthoc_scan`` and ``posthoc.taunorm_scan``); another app's runs log it
    themselves (``mlflow.log_metric("objective_posthoc", …)``)."""
    if not spec:
        return {}, {}
    key = "hydra.sweeper.posthoc_arms"
    if not isinstance(spec, Mapping):
        raise ConfigError(key, spec, "must map an arm's name to the arm whose trials it re-scores")
    names = [a.name for a in arms]
    metric = objectives[0][0]
    if len(objectives) > 1 or (own and posthoc_metric(metric) is None):
        raise ConfigError(key, dict(spec), "needs a single objective" if not own else f"needs a single objective "
                          f"val/<m> with m one of "
                          f"{', '.join(POSTHOC_METRICS)} (runs log its post-hoc twin); the objective is "
                          + ", ".join(m for m, _ in objectives))
    out, kinds = {}, {}
    for name, value in spec.items():
        name, source, kind = str(name), value, "posthoc"
        if isinstance(value, Mapping):
            if set(value) != {"of", "by"} or str(value["by"]) not in POSTHOC_KINDS:
                raise ConfigError(f"{key}.{name}", dict(value), "must be a source arm's name, or {of: <source "
                                  f"arm>, by: <one of {', '.join(POSTHOC_KINDS)}>}}")
            source, kind = value["of"], str(value["by"])
        source = str(source)
        if not name or "/" in name or "${" in name or name != name.strip() or name in names \
                or len(name) > STUDY_NAME_MAX:
            raise ConfigError(f"{key}.{name}", source, f"needs a name of its own: non-empty, at most {STUDY_NAME_MAX} "
                              "characters, without '/', '${' or surrounding spaces, and not one of hydra.sweeper.arms")
        if source not in names:
            raise ConfigError(f"{key}.{name}", source, f"must name one of the arms: {', '.join(map(str, names))}")
        out[name], kinds[name] = source, kind
    return out, kinds

def baseline_arm(wanted: str | None, arms: list[Arm]) -> str:
    """``hydra.sweeper.baseline_arm``, else ``ce`` if an arm has that name, else the first."""
    names = [a.name for a in arms]
    if wanted is None:
        return "ce" if "ce" in names else str(names[0])
    if wanted not in names:
        raise ConfigError("hydra.sweeper.baseline_arm", wanted,
                          f"must be one of the arms: {', '.join(map(str, names))}")
    return str(wanted)


def in_config(key: str, cfg: Any, choices: Mapping[str, Any]) -> bool:
    """Whether ``key`` is a group (``loss``) or a key of the composed config (null counts)."""
    if key in choices:
        return True
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    return OmegaConf.is_dict(node) and leaf in node


def _none_for_missing(values: dict[str, Any], keys: Any) -> dict[str, Any]:
    """A key the arm's config lacks (``loss.class_weights`` of logit_adjusted) is known to
    hold none of a condition's values."""
    return {k: values.get(k) for k in keys}


def _is_sweep(override_text: str) -> bool:
    """Whether an override (``key=expr``) is a search expression rather than a value."""
    key, eq, expr = override_text.partition("=")
    if not eq:
        return False
    from optuna.distributions import BaseDistribution

    return isinstance(parse(key.lstrip("+~"), expr, where=None), BaseDistribution)


def keys_decided(space: SearchSpace) -> list[str]:
    """The searched keys known to be set in every trial: the unconditional ones, and the
    conditional ones whose condition the fixed values decide, and hold."""
    keys = list(space.params)
    fixed = {**space.fixed_for_conditions, **space.fixed}
    for key, cond in space.conditional.items():
        if all(k in fixed for k in cond.when) and cond.active(fixed):
            keys.append(key)
    return keys


def enqueue_baseline(arm: Arm, baseline: Mapping[str, Any] | None) -> None:
    """The first trial of the study (of each arm): the config's defaults for what is
    searched (a plain study: the sweep's ``baseline`` values first)."""
    study = arm.study
    if baseline is None:  # switched off (or an app's plain study: hydra.sweeper.baseline=auto)
        return
    if any(t.user_attrs.get(ATTR_BASELINE) for t in study.get_trials(deepcopy=False)):
        return
    baseline = dict(baseline) if arm.name is None else {}
    params = baseline_params(arm.space, arm.defaults, baseline)
    study.enqueue_trial(params, user_attrs={ATTR_BASELINE: True}, skip_if_exists=True)
