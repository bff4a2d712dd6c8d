"""What a finished sweep prints (the best trial and one line per trick) and writes
(``optimization_results.yaml``)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from omegaconf import OmegaConf

from ..names import ATTR_ARM, ATTR_REQUEUED, ATTR_TRICK, posthoc_attr
from ..trick import short_number
from ._arms import Arm
from ._counts import best_posthoc, best_trial, counts

if TYPE_CHECKING:
    from ._tournament import Tournament

log = logging.getLogger(__name__)


def trick_rows(study: optuna.Study, metric_index: int = 0, direction: str = "maximize") -> list[dict[str, Any]]:
    """Per trick: trials complete/pruned/failed and its best trial (by the first objective)."""
    by: dict[str, list[optuna.trial.FrozenTrial]] = defaultdict(list)
    for t in _finished(study):
        by[str(t.user_attrs.get(ATTR_TRICK, "?"))].append(t)
    return _rows(by, metric_index, direction)


def arm_rows(arms: list[tuple[str, optuna.Study]], metric_index: int = 0,
             direction: str = "maximize", posthoc_arms: dict[str, str] | None = None,
             posthoc_kinds: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The same per arm of a tournament, in the arms' order (no ranking: a validation best
    after tuning is not a comparison); a post-hoc arm's row follows its source's and counts
    the source's trials, scored by their values after its post-hoc kind."""
    rows = _rows({name: _finished(study) for name, study in arms}, metric_index, direction, sort=False)
    studies = dict(arms)
    for name, source in (posthoc_arms or {}).items():
        kind = (posthoc_kinds or {}).get(name, "posthoc")
        trials = [_posthoc_view(t, kind) for t in _finished(studies[source])]
        row = _rows({name: trials}, metric_index, direction, sort=False)[0]
        row["posthoc_of"] = source
        at = next(i for i, r in enumerate(rows) if r["trick"] == source)
        rows.insert(at + 1 + sum(r.get("posthoc_of") == source for r in rows), row)
    return rows


def _posthoc_view(t: optuna.trial.FrozenTrial, kind: str = "posthoc") -> optuna.trial.FrozenTrial:
    """The trial as its post-hoc arm sees it: the value after the post-hoc ``kind`` as its
    value (a complete trial without one, e.g. recorded before the post-hoc arm was declared,
    counts as failed)."""
    import copy

    if t.state != optuna.trial.TrialState.COMPLETE:
        return t
    v = t.user_attrs.get(posthoc_attr(kind))
    view = copy.copy(t)
    if v is None:
        view.state, view.values = optuna.trial.TrialState.FAIL, None
    else:
        view.values = [float(v)]
    return view


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False)
            if t.state.is_finished() and not t.user_attrs.get(ATTR_REQUEUED)]


def _rows(by: dict[str, list[optuna.trial.FrozenTrial]], metric_index: int, direction: str,
          sort: bool = True) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    pick = max if direction == "maximize" else min
    for trick, trials in by.items():
        done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = pick(done, key=lambda t: t.values[metric_index]) if done else None
        rows.append({
            "trick": trick, "complete": len(done),
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
            "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials),
            "best": best.values[metric_index] if best else None,
            "trial": best.number if best else None, "params": best.params if best else {},
        })
    if sort:
        sign = -1.0 if direction == "maximize" else 1.0
        rows.sort(key=lambda r: (r["best"] is None, sign * (r["best"] or 0.0)))
    return rows


def _short(key: str) -> str:
    """Short column text; the trick column already names the loss and weights."""
    from ..trick import short_key

    return short_key(key)


def print_summary(name: str, arms: list[tuple[str | None, optuna.Study]], objectives: list[tuple[str, str]],
                  baseline_arm: str | None = None, posthoc_arms: dict[str, str] | None = None,
                  posthoc_kinds: dict[str, str] | None = None, own: bool = True,
                  seed_key: str | None = None) -> None:
    """The end-of-sweep summary; ``arms`` is ``[(None, study)]`` for a plain study. ``own``:
    imbsweep's app (a plain study's trials grouped by trick); ``seed_key``: what
    ``compare --reseed`` sets (the last line says how to compare)."""
    import sys

    from rich.console import Console
    from rich.table import Table


    console = Console() if sys.stdout.isatty() else Console(width=140)  # logs and pipes: no wrapping
    metric, direction = objectives[0]
    studies = [s for _, s in arms]
    tournament = arms[0][0] is not None
    done = [t for s in studies for t in s.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        console.print(f"study {name}: no completed trial yet")
        return
    if len(objectives) == 1:
        best = best_trial(studies, direction)
        assert best is not None
        where = f"arm {best.user_attrs.get(ATTR_ARM)}" if tournament else ""
        what = ", ".join(w for w in (where, best.user_attrs.get(ATTR_TRICK, "") if own else "") if w)
        value = f"{best.values[0]:.4f}" if own else f"{best.values[0]:.6g}"
        console.print(f"best trial #{best.number}: {metric} = {value}  "
                      + (f"({what}) " if what else "") + str(best.params))
    else:
        for arm, study in arms:
            if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
                continue
            console.print(f"Pareto front of {', '.join(m for m, _ in objectives)}"
                          f"{f' (arm {arm})' if arm else ''}: {len(study.best_trials)} trials")
            for t in study.best_trials:
                console.print(f"  #{t.number}: {t.values} {t.params}")
    if tournament:
        rows = arm_rows([(str(a), s) for a, s in arms], 0, direction, posthoc_arms, posthoc_kinds)
        title = f"study {name}: best {metric} per arm (validation, after tuning; not yet a comparison)"
    elif own:
        rows = trick_rows(studies[0], 0, direction)
        title = f"study {name}: best {metric} per trick (validation)"
    else:
        rows = _rows({name: _finished(studies[0])}, 0, direction)
        title = f"study {name}: best {metric}"
    table = Table(title=title)
    first = "arm" if tournament else "trick" if own else "study"
    for col in (first, "best", "trial", "complete", "pruned", "failed", "its parameters"):
        table.add_column(col, justify="left" if col in (first, "its parameters") else "right")
    for r in rows:
        params = ", ".join(f"{_short(k)}={short_number(v)}" if isinstance(v, float) else f"{_short(k)}={v}"
                           for k, v in r["params"].items() if k not in ("loss", "loss.class_weights"))
        label = r["trick"] + (" (baseline)" if tournament and r["trick"] == baseline_arm else "")
        if r.get("posthoc_of"):
            label += f" (post-hoc on {r['posthoc_of']}'s models)"
        table.add_row(label, "-" if r["best"] is None else f"{r['best']:.4f}",
                      "-" if r["trial"] is None else str(r["trial"]), str(r["complete"]), str(r["pruned"]),
                      str(r["failed"]), params)
    console.print(table)
    from ..posthoc import POSTHOC_KINDS

    for arm, source in (posthoc_arms or {}).items():
        what = POSTHOC_KINDS[(posthoc_kinds or {}).get(arm, "posthoc")]
        console.print(f"{arm} trains nothing of its own: it re-scores {source}'s trials (the same models and "
                      f"budget) after {what}, tau picked on validation", style="dim")
    if not tournament and not own:
        return
    what = "arm" if tournament else "trick"
    if seed_key is None:
        console.print(f"one trial per {what} is not a comparison: re-running the best of each on the same seeds "
                      "needs the config key that seeds a run: hydra.sweeper.seed_key=<key>", style="dim")
        return
    console.print(f"one trial per {what} is not a comparison: re-run the best of each with the same seeds "
                  f"and compare: imbsweep compare {name} --reseed 5", style="dim")


def write_results(arms: Sequence[Arm], objectives: Sequence[tuple[str, str]], posthoc_arms: Mapping[str, str],
                  posthoc_kinds: Mapping[str, str], sweep_dir: Path) -> Path | None:
    """``optimization_results.yaml`` in the official plugin's format, in ``sweep_dir`` (a
    tournament adds each arm's best under ``arms``); None before any trial completed."""
    studies = [a.study for a in arms]
    if not counts(studies)["complete"]:
        return None
    if len(objectives) == 1:
        direction = objectives[0][1]
        best = best_trial(studies, direction)
        assert best is not None
        results: dict[str, Any] = {"name": "optuna", "best_params": best.params, "best_value": best.value}
        if arms[0].name is not None:
            results["best_arm"] = best.user_attrs.get(ATTR_ARM)
            results["arms"] = {}
            for a in arms:
                b = best_trial([a.study], direction)
                if b is not None:
                    results["arms"][a.name] = {"fixed": {k: str(v) for k, v in a.values.items()},
                                               "best_params": b.params, "best_value": b.value, "best_trial": b.number}
            for name, source in posthoc_arms.items():
                src = next(a for a in arms if a.name == source)
                kind = posthoc_kinds.get(name, "posthoc")
                b = best_posthoc(src.study, direction, kind)
                if b is not None:
                    results["arms"][name] = {"posthoc_of": source, "posthoc_by": kind, "best_params": b.params,
                                             "best_value": b.user_attrs[posthoc_attr(kind)], "best_trial": b.number}
    else:
        results = {"name": "optuna", "solutions": [
            {**({"arm": a.name} if a.name is not None else {}), "params": t.params, "values": t.values}
            for a in arms if counts([a.study])["complete"] for t in a.study.best_trials]}
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / "optimization_results.yaml"
    OmegaConf.save(OmegaConf.create(results), path)
    return path


def write_study_files(t: Tournament, sweep_dir: Path, parent: Any, studies: list[optuna.Study], stopping: bool) -> None:
    """optimization_results.yaml and the study's plots in MLflow. While an error stops the
    sweep (a storage gone), a failure here says nothing more: that error goes on, unhidden."""
    try:
        results = write_results(t.arms, t.objectives, t.posthoc_arms, t.posthoc_kinds,
                                sweep_dir)
    except Exception:
        if not stopping:
            raise
        log.debug("the study's results file was not written", exc_info=True)
        return
    try:
        parent.log_study_artifacts(studies, results)
    except Exception as exc:  # noqa: BLE001 - plots must not lose a finished study
        (log.debug if stopping else log.warning)("could not log the study's plots to MLflow: %s", exc)
