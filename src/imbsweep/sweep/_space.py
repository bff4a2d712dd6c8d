"""Search spaces in the official Hydra Optuna sweeper's syntax, with conditional parameters.

``choice(a, b)``, ``range(start, stop[, step])`` (Hydra's stop is exclusive: ``range(1,5)``
samples 1..4), ``interval(low, high)``, ``int(interval(low, high))`` and
``tag(log, interval(...))``; anything else is a fixed value passed through.

Conditional parameters are sampled only when other parameters hold given values::

    conditional:
      loss.gamma:
        when: {loss: focal}            # every condition must hold; a list means "one of"
        space: interval(0.5, 5.0)

A condition may name a conditional parameter listed before it (``when: {loss.class_weights:
inverse}`` where ``loss.class_weights`` is itself conditional on ``loss``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from ..errors import ConfigError


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse(key: str, expression: Any, where: str | None = "hydra.sweeper.params") -> BaseDistribution | Any:
    """The Optuna distribution an expression describes, or the fixed value it is.

    Raises:
        ConfigError: the expression does not parse or describes an empty/invalid space.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    text = expression if isinstance(expression, str) else _encode(expression)
    try:
        override = OverridesParser.create().parse_override(f"{key}={text}")
    except HydraException as exc:  # OverrideParseException, or a bare one for some inputs
        msg = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip())
        raise ConfigError(f"{where}.{key}" if where else key, expression, f"cannot parse: {msg}") from None
    try:
        return from_override(override)
    except ValueError as exc:
        raise ConfigError(f"{where}.{key}" if where else key, expression, str(exc)) from None


def from_override(override: Any) -> BaseDistribution | Any:
    """Map a parsed Hydra override to an Optuna distribution (or its fixed value)."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    value = override.value()
    if not override.is_sweep_override():
        return value
    tags = set(getattr(value, "tags", None) or ())
    if tags - {"log"}:
        raise ValueError(f"unknown tag {', '.join(sorted(tags - {'log'}))}; the one tag is log: "
                         "tag(log, interval(low, high))")
    if tags and not isinstance(value, IntervalSweep):
        raise ValueError("tag(log, …) applies to interval(low, high) only: a choice or a range samples "
                         "the values it lists, so a log scale would be ignored; use tag(log, interval(…)) "
                         "or list the values")
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        choices = list(override.sweep_iterator())
        if not choices:
            raise ValueError("an empty choice")
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        values = list(override.sweep_iterator())  # Hydra's own semantics: stop is exclusive
        if not values:
            raise ValueError("an empty range (stop is exclusive)")
        _note_range(str(override.key_or_group), value, values)
        if value.step is None or value.step <= 0 or len(values) == 1:
            return CategoricalDistribution(values)
        lo, hi = values[0], values[-1]
        if all(_is_int(v) for v in (value.start, value.step)):
            return IntDistribution(int(lo), int(hi), step=int(value.step))
        return FloatDistribution(float(lo), float(hi), step=float(value.step))
    if isinstance(value, IntervalSweep):
        lo, hi, log = value.start, value.end, "log" in value.tags
        if lo is None or hi is None or lo >= hi:
            raise ValueError("an interval needs low < high")
        if log and lo <= 0:
            raise ValueError("a log interval needs low > 0")
        if _is_int(lo) and _is_int(hi):
            return IntDistribution(int(lo), int(hi), log=log)
        return FloatDistribution(float(lo), float(hi), log=log)
    raise ValueError(f"{type(value).__name__} is not supported")


#: ``range(…)`` expressions parsed whose stop the official Optuna sweeper would sample too
#: (``key: (expression, its last value here, the stop)``); the sweep prints them once
RANGE_STOPS: dict[str, tuple[str, Any, Any]] = {}


def _note_range(key: str, value: Any, values: list[Any]) -> None:
    step = value.step if value.step else 1
    try:
        reaches = abs((value.stop - value.start) / step - round((value.stop - value.start) / step)) < 1e-9
    except (TypeError, ZeroDivisionError):
        return
    if reaches and step > 0 and value.stop > value.start:
        text = f"range({value.start}, {value.stop}" + (f", {value.step})" if value.step not in (None, 1) else ")")
        RANGE_STOPS[key] = (text, values[-1], value.stop)


def range_note() -> str | None:
    """The one line that says how the ranges parsed so far differ from the official plugin's."""
    if not RANGE_STOPS:
        return None
    shown = "; ".join(f"{k}: {t} ends at {last}, not {stop}" for k, (t, last, stop) in RANGE_STOPS.items())
    return (f"{shown} (range excludes its stop, as Hydra's own range does; the official Optuna sweeper includes "
            "it: extend the stop by one step for that)")


def _encode(value: Any) -> str:
    """A value as override text that Hydra's parser reads back as the same value: strings
    are quoted when they would otherwise parse as something else (``'1'``, ``'a,b'``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    if isinstance(value, str):
        return value if _reads_back(value) else "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value) if isinstance(value, float) else str(value)


@functools.lru_cache(maxsize=4096)  # a trial's overrides are mostly the same strings (a parse is ~0.1 ms)
def _reads_back(text: str) -> bool:
    from hydra.errors import HydraException

    try:
        ov = _parser().parse_override(f"k={text}")
    except HydraException:
        return False
    return not ov.is_sweep_override() and ov.value() == text


@functools.cache
def _parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def override(key: str, value: Any) -> str:
    """``key=value`` as a Hydra override string."""
    return f"{key}={_encode(value)}"


def written_override(key: str, value: Any) -> str:
    """``key=value`` for a value as a sweep file writes it (an arm's values): a string is
    override text as it stands (``choice(a, b)`` stays a search expression), anything else
    is encoded as a value."""
    return f"{key}={value}" if isinstance(value, str) else override(key, value)


@dataclass(frozen=True)
class Conditional:
    """A parameter sampled only when every ``when`` condition holds."""

    distribution: BaseDistribution
    when: Mapping[str, tuple[Any, ...]]

    def active(self, values: Mapping[str, Any]) -> bool:
        return all(k in values and values[k] in allowed for k, allowed in self.when.items())


@dataclass
class SearchSpace:
    """Unconditional distributions (sampled in order), conditional ones, fixed values."""

    params: dict[str, BaseDistribution] = field(default_factory=dict)
    conditional: dict[str, Conditional] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    #: fixed command-line overrides, passed to every trial as typed (``+x=1``, ``~y``)
    passthrough: list[str] = field(default_factory=list)
    fixed_for_conditions: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, params: Mapping[str, Any] | None, conditional: Mapping[str, Any] | None,
              cli_overrides: list[str] | None = None,
              config_values: Mapping[str, Any] | None = None,
              arm_overrides: list[str] | None = None) -> SearchSpace:
        """From the sweeper's ``params`` and ``conditional`` and the command line's
        overrides, which win: a fixed value removes an unconditional parameter; on a
        conditional key it replaces the space and still applies only where the condition
        holds (``loss.gamma=2.0`` reaches the focal trials only); a search expression
        replaces the space and keeps the condition.

        Args:
            config_values: the composed config's value of keys that are neither searched nor
                fixed here, so that a condition on them is decided by the config (an arm of
                a tournament that does not fix ``loss.class_weights``).
            arm_overrides: a tournament arm's values, applied before the command line's: what
                an arm fixes or searches applies to the arm unconditionally.
        """
        space = cls()
        conditional = conditional or {}
        searched_here: dict[str, BaseDistribution] = {}  # command-line spaces of conditional keys
        fixed_here: dict[str, Any] = {}  # command-line values of conditional keys
        by_arm: set[str] = set()
        for key, expr in (params or {}).items():
            space._add(str(key), expr if isinstance(expr, BaseDistribution) else parse(str(key), expr))
        for ov, from_arm in [(o, True) for o in arm_overrides or []] + [(o, False) for o in cli_overrides or []]:
            key, eq, expr = ov.partition("=")
            bare = key.lstrip("+~")
            value = parse(bare, expr, where=None) if eq else None
            if from_arm:
                by_arm.add(bare)
            elif bare in conditional and bare not in by_arm and eq and not key.startswith(("~", "+")):
                if isinstance(value, BaseDistribution):
                    searched_here[bare] = value
                else:
                    fixed_here[bare] = value
                continue
            if isinstance(value, BaseDistribution):
                # a key the config does not have (``+w=interval(0, 1)``, ``++w=…``) keeps its prefix: its
                # trials' overrides add it (``+w=0.3``), as the official plugin's do
                space._add(key[:len(key) - len(key.lstrip("+"))] + bare, value)  # (+ or ++ as typed)
            else:
                space.params.pop(bare, None)
                space.fixed.pop(bare, None)
                space.passthrough.append(ov)
                if eq and not key.startswith("~"):
                    space.fixed_for_conditions[bare] = value
        removed = {ov.partition("=")[0].lstrip("+~") for ov in space.passthrough}
        for key, value in (config_values or {}).items():
            if key not in space.params and key not in space.fixed and key not in removed:
                space.fixed_for_conditions.setdefault(key, value)
        for key, spec in conditional.items():
            where = f"hydra.sweeper.conditional.{key}"
            if not isinstance(spec, Mapping) or "when" not in spec or "space" not in spec:
                raise ConfigError(where, spec, "must be {when: {param: value(s)}, space: <expression>}")
            dist = parse(str(key), spec["space"], where="hydra.sweeper.conditional")
            if not isinstance(dist, BaseDistribution):
                raise ConfigError(f"{where}.space", spec["space"], "must be a search expression")
            if str(key) in removed or str(key) in space.fixed or str(key) in by_arm:
                continue  # fixed (or searched) by an arm or by the file: not conditional there
            when = {}
            for cond_key, allowed in dict(spec["when"]).items():
                if cond_key not in space.params and cond_key not in space.fixed \
                        and cond_key not in space.fixed_for_conditions and cond_key not in space.conditional:
                    raise ConfigError(f"{where}.when", cond_key,
                                      "must name a parameter of hydra.sweeper.params, a conditional "
                                      "parameter listed before it, or a fixed value")
                many = isinstance(allowed, Sequence) and not isinstance(allowed, str)  # list or ListConfig
                when[str(cond_key)] = tuple(allowed) if many else (allowed,)
            if str(key) in fixed_here:  # one value, where the condition holds
                dist = CategoricalDistribution([fixed_here[str(key)]])
            space.conditional[str(key)] = Conditional(searched_here.get(str(key), dist), when)
            space.params.pop(str(key), None)
        return space

    def _add(self, key: str, value: Any) -> None:
        if isinstance(value, BaseDistribution):
            self.params[key] = value
            self.fixed.pop(key, None)
        else:
            self.fixed[key] = value
            self.params.pop(key, None)

    def sample(self, trial: Any) -> dict[str, Any]:
        """Suggest every active parameter on an Optuna trial (define-by-run)."""
        values: dict[str, Any] = {}
        for key, dist in self.params.items():
            values[key] = trial._suggest(key, dist)
        known = {**self.fixed_for_conditions, **self.fixed, **values}
        for key, cond in self.conditional.items():  # in order: one may depend on an earlier one
            if cond.active(known):
                values[key] = known[key] = trial._suggest(key, cond.distribution)
        return values

    def overrides(self, sampled: Mapping[str, Any]) -> list[str]:
        """Every trial's overrides: fixed values, the command line's, then the sampled ones."""
        return [*(override(k, v) for k, v in self.fixed.items()), *self.passthrough,
                *(override(k, v) for k, v in sampled.items())]

    def names(self) -> Iterator[str]:
        yield from self.params
        yield from self.conditional

    def distributions(self) -> dict[str, BaseDistribution]:
        """Every searched key's distribution: the unconditional ones, then the conditional."""
        return {**self.params, **{k: c.distribution for k, c in self.conditional.items()}}


_SEARCH_SPACE_URL = "https://hydra.cc/docs/upgrades/1.1_to_1.2/changes_to_sweeper_config/"


def search_space_params(params: Mapping[str, Any] | None,
                        search_space: Mapping[str, Any] | None) -> dict[str, Any]:
    """``hydra.sweeper.params``, or the distributions of the official plugin's deprecated
    ``hydra.sweeper.search_space`` (``{x: {type: float, low: 0, high: 1, step: .., log: ..}}``)
    when ``params`` is not given, with the official plugin's warnings."""
    import warnings

    if search_space is None:
        return dict(params or {})
    if params is not None:
        warnings.warn("Both hydra.sweeper.params and hydra.sweeper.search_space are configured.\nHydra will use "
                      f"hydra.sweeper.params for defining search space.\n{_SEARCH_SPACE_URL}", stacklevel=2)
        return dict(params)
    warnings.warn("`hydra.sweeper.search_space` is deprecated and will be removed in the next major release.\n"
                  f"Please configure with `hydra.sweeper.params`.\n{_SEARCH_SPACE_URL}", stacklevel=2)
    return {str(k): distribution_of(str(k), v) for k, v in search_space.items()}


def distribution_of(key: str, spec: Any) -> BaseDistribution:
    """One entry of the deprecated ``search_space``: ``{type: categorical, choices: [...]}``,
    ``{type: int|float, low, high, step?, log?}``."""
    where = f"hydra.sweeper.search_space.{key}"
    if not isinstance(spec, Mapping) or spec.get("type") not in ("categorical", "int", "float"):
        raise ConfigError(where, spec, "must be {type: categorical, choices: [...]} or {type: int|float, low: .., "
                          "high: .., step: .., log: ..}")
    kind = spec["type"]
    try:
        if kind == "categorical":
            return CategoricalDistribution(list(spec["choices"]))
        low, high, step, log = spec["low"], spec["high"], spec.get("step"), bool(spec.get("log") or False)
        if kind == "int":
            return IntDistribution(int(low), int(high), log=log, step=1 if step is None else int(step))
        return FloatDistribution(float(low), float(high), log=log, step=None if step is None else float(step))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(where, spec, f"is not a search space Optuna takes ({exc})") from None


def custom_space(path: str | None) -> Any:
    """The function ``hydra.sweeper.custom_search_space`` names (``module.function``, called with
    the sweep's config and each trial after its parameters are sampled), None when unset."""
    if not path:
        return None
    from hydra.utils import get_method

    try:
        return get_method(path)
    except Exception as exc:  # noqa: BLE001 - any import problem is the same bad input
        raise ConfigError("hydra.sweeper.custom_search_space", path,
                          f"must name a function (module.function) that can be imported: "
                          f"{' '.join(str(exc).split())[:300]}") from None


def describe(dist: BaseDistribution) -> str:
    """A distribution in the search-expression syntax it was written in (``choice(a, b)``,
    ``tag(log, interval(1e-3, 0.1))``, ``int(interval(1, 8))``)."""
    if isinstance(dist, CategoricalDistribution):
        return "choice(" + ", ".join(str(c) for c in dist.choices) + ")"
    if isinstance(dist, IntDistribution | FloatDistribution):
        if dist.step not in (None, 1):
            text = f"range({dist.low}, {dist.high + dist.step}, {dist.step})"
        else:
            text = f"interval({dist.low:g}, {dist.high:g})"
            if isinstance(dist, IntDistribution):
                text = f"int({text})"
        return f"tag(log, {text})" if dist.log else text
    return repr(dist)
