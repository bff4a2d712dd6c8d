"""Bad input tested by construction: every parameter a class (or function) declares in
``_parameter_constraints``, every key of the sections no class owns (``trainer``, ``eval``,
``metrics``, the optimizer's ranges) and every sweeper setting with a declaration gets the
invalid values its declaration implies (``constraints.invalid_values``), on the command line
of the real CLI (in-process): each gives exit code 2, one line naming the key, the value and
everything allowed, and no MLflow run.

``make test`` tries one invalid value of each parameter; ``make test-all`` every one."""

from __future__ import annotations

import inspect
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

from imbsweep import _config
from imbsweep._paths import PACKAGE_CONF
from imbsweep.cli import main
from imbsweep.constraints import (
    BOOLEAN,
    NULL,
    TEXT,
    Constraint,
    Interval,
    ListOf,
    Options,
    Pattern,
    allowed_text,
    declared,
    invalid_values,
)
from imbsweep.sweep._settings import Settings
from tests.helpers.configs import TINY

RUN = ["run", *TINY, "tracking.experiment=bad"]
SWEEP = ["sweep", "smoke", "trainer.epochs=1", "hydra.sweeper.n_trials=1", "hydra.sweeper.study_name=bad"]
#: the groups whose options name a class (or function) by ``_target_``
GROUPS = (*_config.GROUP_RUNTIME, "model", "data")
#: what a data option needs set beside the value tried (its file is looked for after the checks)
DATA_NEEDS = {"tabular": ["data.path=t.csv", "data.target=y"], "image_folder": ["data.path=images"]}
#: a run without TINY's model settings, for the model options (checked before any data is read)
RUN_MODEL = ["run", "data=digits_lt", "trainer.epochs=1", "tracking.experiment=bad"]


def _override_value(v: Any) -> str:
    """A value as Hydra's override grammar reads it back to the same Python value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, str):
        return "'" + v.replace("'", "\\'") + "'"
    if isinstance(v, list):
        return "[" + ",".join(_override_value(x) for x in v) + "]"
    return repr(v)


def _owner(obj: Any, name: str) -> str:
    """The class that declares ``name`` (the most derived one), or the function."""
    owner = next((c for c in getattr(obj, "__mro__", ()) if name in vars(c).get("_parameter_constraints", {})), obj)
    return f"{owner.__module__}.{owner.__qualname__}"


def _group_cases() -> list[tuple[str, list[str], str, Any, list[Constraint]]]:
    """(id, argv, key, value, constraints): each declared parameter of each group's targets,
    tried on the first option that builds the class declaring it."""
    cases: list[tuple[str, list[str], str, Any, list[Constraint]]] = []
    seen: set[tuple[str, str]] = set()
    for group in GROUPS:
        at_run_time = set(_config.GROUP_RUNTIME.get(group, ()))
        for path in sorted((PACKAGE_CONF / group).glob("*.yaml")):
            target = OmegaConf.to_container(OmegaConf.load(path)).get("_target_")  # type: ignore[union-attr]
            if not target or str(target).startswith("torch"):
                continue
            obj = get_object(str(target))
            params = inspect.signature(obj).parameters
            for name, constraints in declared(obj).items():
                if name in at_run_time or name not in params:
                    continue
                owner = _owner(obj, name)
                if (owner, name) in seen:
                    continue
                seen.add((owner, name))
                run = RUN_MODEL if group == "model" else RUN
                if group == "data":
                    run = [*RUN, *(n for n in DATA_NEEDS.get(path.stem, []) if not n.startswith(f"data.{name}="))]
                for i, v in enumerate(invalid_values(list(constraints))):
                    key = f"{group}.{name}"
                    cases.append((f"{group}={path.stem}-{name}-{i}",
                                  [*run, f"{group}={path.stem}", f"++{key}={_override_value(v)}"],
                                  key, v, list(constraints)))
    return cases


def _section_cases() -> list[tuple[str, list[str], str, Any, list[Constraint]]]:
    cases: list[tuple[str, list[str], str, Any, list[Constraint]]] = []
    tables: list[tuple[str, dict[str, list[Constraint]], list[str]]] = [
        ("trainer", _config.TRAINER, []), ("eval", _config.EVAL, []),
        ("metrics", {"ece_bins": _config.METRICS["ece_bins"]}, []), ("metrics.shots", _config.SHOTS, []),
        ("optimizer", _config.OPTIMIZER, ["optimizer=sgd"])]
    for prefix, table, extra in tables:
        for name, constraints in table.items():  # (list[Constraint])
            for i, v in enumerate(invalid_values(constraints)):
                key = f"{prefix}.{name}"
                cases.append((f"{key}-{i}", [*RUN, *extra, f"++{key}={_override_value(v)}"], key, v, constraints))
    for name, declared_ in Settings._parameter_constraints.items():
        for i, v in enumerate(invalid_values(list(declared_))):
            key = f"hydra.sweeper.{name}"
            cases.append((f"{key}-{i}", [*SWEEP, f"{key}={_override_value(v)}"], key, v, list(declared_)))
    return cases


CASES = _group_cases() + _section_cases()


def _params(cases: list[Any]) -> list[Any]:
    """The first invalid value of each parameter in make test, every one in make test-all."""
    out = []
    for case in cases:
        first = case[0].endswith("-0")
        out.append(pytest.param(*case[1:], id=case[0], marks=() if first else pytest.mark.slow))
    return out


def test_every_declared_parameter_is_tried() -> None:
    """Every declaration of every target a config option names is among the cases (a new class
    or parameter joins the test by declaring its constraints)."""
    tried = {key for _, _, key, _, _ in CASES}
    for group in GROUPS:
        for path in (PACKAGE_CONF / group).glob("*.yaml"):
            target = OmegaConf.to_container(OmegaConf.load(path)).get("_target_")  # type: ignore[union-attr]
            if target and not str(target).startswith("torch"):
                obj = get_object(str(target))
                names = set(declared(obj)) & set(inspect.signature(obj).parameters)
                assert {f"{group}.{n}" for n in names - set(_config.GROUP_RUNTIME.get(group, ()))} <= tried
    assert {f"hydra.sweeper.{n}" for n in Settings._parameter_constraints} <= tried
    assert {f"trainer.{n}" for n in _config.TRAINER} <= tried
    assert len(CASES) > 100


@pytest.mark.parametrize(("argv", "key", "value", "constraints"), _params(CASES))
def test_each_invalid_value_is_one_line_exit_2_and_no_run(
        argv: list[str], key: str, value: Any, constraints: list[Constraint], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith(f"imbsweep: error: {key}="), err
    assert allowed_text(constraints) in lines[0], (lines[0], allowed_text(constraints))
    assert "Traceback" not in out + err
    db = tmp_path / "mlruns" / "mlflow.db"
    if db.exists():
        with sqlite3.connect(db) as con:
            assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


# --- the constraints themselves -----------------------------------------------------------

@pytest.mark.parametrize(("constraints", "text"), [
    ([Interval(float, 0, None, "right")], "must be a finite number > 0"),
    ([Interval(float, 0, 1, "left")], "must be a finite number in [0, 1)"),
    ([Interval(int, 1, None), NULL], "must be an integer >= 1 or null"),
    ([Interval(int, None, None)], "must be an integer"),
    ([Options("auto"), BOOLEAN], "must be auto or true or false"),
    ([Options("a", "b"), Pattern(r"c:\d+", "c:N")], "must be one of a, b or c:N"),
    ([ListOf(Interval(float, 0, None))], "must be a non-empty list, each a finite number >= 0"),
    ([TEXT, NULL], "must be a non-empty string or null"),
])
def test_what_is_allowed_reads_as_words(constraints: list[Constraint], text: str) -> None:
    assert allowed_text(constraints) == text


@pytest.mark.parametrize("constraints", [
    [Interval(float, 0, None, "right")], [Interval(float, 0, 1)], [Interval(int, 1, None), NULL],
    [Options("x", "y")], [BOOLEAN], [ListOf(Interval(int, 1, None))], [TEXT, NULL], [Options("auto"), BOOLEAN],
])
def test_the_invalid_values_are_refused_and_the_ends_decided(constraints: list[Constraint]) -> None:
    bad = invalid_values(constraints)
    assert bad and not any(c.allows(v) for v in bad for c in constraints)
    interval = next((c for c in constraints if isinstance(c, Interval)), None)
    if interval is not None and interval.low is not None:
        assert interval.allows(interval.low) == (interval.closed in ("both", "left"))
        assert not interval.allows(True) and not interval.allows(float("nan"))
