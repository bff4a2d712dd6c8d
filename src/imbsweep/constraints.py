"""Parameters' constraints declared as data, one validator, and the invalid values each
declaration implies (for the test that tries them all).

A class (or function) that a config group builds declares what each of its parameters takes,
as scikit-learn's estimators do with ``_parameter_constraints``::

    class Focal(ImbalanceLoss):
        _parameter_constraints = {"gamma": [Interval(float, 0, None)], ...}

A parameter takes a value when any one of its constraints does. :func:`validate` checks a
config node against the declarations of its target (and of the classes it derives from)
before the target is built, and raises the one-line :class:`~imbsweep.errors.ConfigError`
naming the key, the value and everything allowed. Checks that tie two parameters together
(DRW without class weights, label smoothing with the focal factor) stay in the constructors.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: the attribute that holds a class's (or function's) declarations
ATTRIBUTE = "_parameter_constraints"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


@dataclass(frozen=True)
class Interval:
    """A finite number (``kind=float``: an integer or a float) or an integer (``kind=int``)
    between ``low`` and ``high`` (None: unbounded), each end included or not (``closed``:
    ``both``, ``left``, ``right``, ``neither``)."""

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"

    def __post_init__(self) -> None:
        assert self.kind in (int, float) and self.closed in ("both", "left", "right", "neither")

    def allows(self, v: Any) -> bool:
        if not (_is_int(v) if self.kind is int else _is_real(v)) or not math.isfinite(v):
            return False
        if self.low is not None and (v < self.low or (v == self.low and self.closed in ("right", "neither"))):
            return False
        return not (self.high is not None
                    and (v > self.high or (v == self.high and self.closed in ("left", "neither"))))

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a finite number"
        lo = None if self.low is None else (">=" if self.closed in ("both", "left") else ">")
        hi = None if self.high is None else ("<=" if self.closed in ("both", "right") else "<")
        if lo and hi:
            left = "[" if lo == ">=" else "("
            right = "]" if hi == "<=" else ")"
            return f"{what} in {left}{_number(self.low)}, {_number(self.high)}{right}"  # type: ignore[arg-type]
        if lo:
            return f"{what} {lo} {_number(self.low)}"  # type: ignore[arg-type]
        if hi:
            return f"{what} {hi} {_number(self.high)}"  # type: ignore[arg-type]
        return what

    def invalid(self) -> Iterator[Any]:
        """Values outside: below, above, the wrong kind."""
        step = 1 if self.kind is int else 0.5
        if self.low is not None:
            yield self.low if self.closed in ("right", "neither") else self.low - step
        if self.high is not None:
            yield self.high if self.closed in ("left", "neither") else self.high + step
        yield "abc"
        yield True
        if self.kind is int:
            yield (self.low if self.low is not None else 0) + 1.5
        else:
            yield float("inf")


@dataclass(frozen=True)
class Options:
    """One of the given values (strings, or integers: ``Options(1, 3)``)."""

    values: tuple[Any, ...]

    def __init__(self, *values: Any) -> None:
        object.__setattr__(self, "values", tuple(values))

    def allows(self, v: Any) -> bool:
        return any(type(v) is type(o) and v == o for o in self.values)

    def describe(self) -> str:
        shown = [str(v) for v in self.values]
        return shown[0] if len(shown) == 1 else f"one of {', '.join(shown)}"

    def invalid(self) -> Iterator[Any]:
        yield "not_an_option"
        yield 3


@dataclass(frozen=True)
class Pattern:
    """A string matching ``regex`` (whole), shown as ``shown`` (``cuda:N``)."""

    regex: str
    shown: str

    def allows(self, v: Any) -> bool:
        return isinstance(v, str) and re.fullmatch(self.regex, v) is not None

    def describe(self) -> str:
        return self.shown

    def invalid(self) -> Iterator[Any]:
        yield "?"


@dataclass(frozen=True)
class ListOf:
    """A non-empty list whose every item ``item`` takes."""

    item: Interval | Options

    def allows(self, v: Any) -> bool:
        return isinstance(v, Sequence) and not isinstance(v, str) and bool(v) and all(self.item.allows(x) for x in v)

    def describe(self) -> str:
        return f"a non-empty list, each {self.item.describe()}"

    def invalid(self) -> Iterator[Any]:
        yield []
        yield [next(iter(self.item.invalid()))]
        yield "abc"


@dataclass(frozen=True)
class Kind:
    """A value ``test`` takes, shown as ``shown``; ``bad``: the invalid values the generated
    bad-input test tries."""

    test: Callable[[Any], bool]
    shown: str
    bad: tuple[Any, ...] = ()

    def allows(self, v: Any) -> bool:
        return self.test(v)

    def describe(self) -> str:
        return self.shown

    def invalid(self) -> Iterator[Any]:
        return iter(self.bad)


BOOLEAN = Kind(lambda v: isinstance(v, bool), "true or false", ("maybe", 2))  #: true or false
MAPPING = Kind(lambda v: isinstance(v, Mapping), "a mapping ({key: value, …})", (3,))  #: a mapping
NULL = Kind(lambda v: v is None, "null")  #: null (None)
TEXT = Kind(lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string", ("",))  #: a non-empty string

SEED = Interval(int, None, None)  #: any integer (a seed)
FRACTION = Interval(float, 0, 1, "neither")  #: a share strictly between 0 and 1


def fields_of(obj: Any) -> dict[str, Any]:
    """A dataclass's constructor arguments as they are now: what ``__post_init__`` validates."""
    import dataclasses

    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}


Constraint = Interval | Options | Pattern | ListOf | Kind


def declared(target: Any) -> dict[str, list[Constraint]]:
    """The declarations of ``target`` and of the classes it derives from (a subclass's own
    declaration of a parameter wins)."""
    out: dict[str, list[Constraint]] = {}
    for cls in reversed(getattr(target, "__mro__", (target,))):
        out.update(vars(cls).get(ATTRIBUTE, {}) if isinstance(cls, type) else getattr(cls, ATTRIBUTE, {}))
    return out


def allowed_text(constraints: Sequence[Constraint]) -> str:
    """``must be a finite number > 0 or null``."""
    return "must be " + " or ".join(c.describe() for c in constraints)


def check(key: str, value: Any, constraints: Sequence[Constraint]) -> None:
    """Raises ConfigError unless one of ``constraints`` takes ``value``."""
    if not any(c.allows(value) for c in constraints):
        raise ConfigError(key, value, allowed_text(constraints))


def validate(target: Any, values: Mapping[str, Any], prefix: str) -> None:
    """Check each of ``values`` that ``target`` declares (``prefix.name`` in the error)."""
    constraints = declared(target)
    for name, value in values.items():
        if str(name) in constraints:
            check(f"{prefix}.{name}", value, constraints[str(name)])


def checked(prefix: str) -> Callable[[type[T]], type[T]]:
    """A class decorator: the class's ``__init__`` validates its arguments (defaults included)
    against the declarations before it runs, errors naming ``prefix.<parameter>``; built from
    a config or in code of one's own, the same checks."""

    def wrap(cls: type[T]) -> type[T]:
        init = cls.__init__
        signature = inspect.signature(init)

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            try:
                bound = signature.bind(self, *args, **kwargs)
            except TypeError:
                init(self, *args, **kwargs)  # (Python's own error for a wrong call)
                return
            bound.apply_defaults()
            validate(cls, {k: v for k, v in list(bound.arguments.items())[1:]}, prefix)
            init(self, *args, **kwargs)

        cls.__init__ = __init__  # type: ignore[method-assign]
        return cls

    return wrap


def validate_section(prefix: str, node: Mapping[str, Any], table: Mapping[str, Sequence[Constraint]],
                     required: Sequence[str] = ()) -> None:
    """A config section no class owns (``trainer``, ``eval``): every key one of ``table``'s,
    each value (``required`` ones also when absent) taken by its constraints."""
    for k in node:
        if str(k) not in table:
            raise ConfigError(f"{prefix}.{k!s}", node[k], f"unknown key; allowed: {', '.join(table)}")
    for k, constraints in table.items():
        if k in node or k in required:
            check(f"{prefix}.{k}", plain(node.get(k)), constraints)


def is_config(v: Any) -> bool:
    """Whether ``v`` is an OmegaConf node (told without importing OmegaConf)."""
    return type(v).__module__.startswith("omegaconf")


def plain(v: Any) -> Any:
    """A config node as plain containers (interpolations resolved), anything else as it is;
    OmegaConf is imported only for a node of its own (a loop of one's own never needs it)."""
    if not is_config(v):
        return v
    from omegaconf import OmegaConf

    return OmegaConf.to_container(v, resolve=True)


def takes(prefix: str, constraints: Mapping[str, Sequence[Constraint]]) -> Callable[[F], F]:
    """A function's declarations (``_parameter_constraints`` on the function), its arguments
    validated when it is called, errors naming ``prefix.<parameter>``."""

    def wrap(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def checked_fn(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind_partial(*args, **kwargs)
            validate(checked_fn, dict(bound.arguments), prefix)
            return fn(*args, **kwargs)

        checked_fn._parameter_constraints = dict(constraints)  # type: ignore[attr-defined]
        return checked_fn  # type: ignore[return-value]

    return wrap


def invalid_values(constraints: Sequence[Constraint]) -> list[Any]:
    """Values none of ``constraints`` takes: what each one rules out, less what another allows
    (null among them where nothing allows it)."""
    seen: list[Any] = [] if any(c.allows(None) for c in constraints) else [None]
    for c in constraints:
        for v in c.invalid():
            if not any(o.allows(v) for o in constraints) and not any(v is s or (type(v) is type(s) and v == s)
                                                                     for s in seen):
                seen.append(v)
    return seen


__all__ = ["ATTRIBUTE", "BOOLEAN", "FRACTION", "MAPPING", "NULL", "SEED", "TEXT", "Constraint", "Interval", "Kind",
           "ListOf", "Options", "Pattern", "allowed_text", "check", "checked", "declared", "fields_of",
           "invalid_values", "is_config", "plain", "takes", "validate", "validate_section"]
