"""What a finished sweep prints: the best trial and one line per trick."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import optuna


def trick_rows(study: optuna.Study, metric_index: int = 0, direction: str = "maximize") -> list[dict[str, Any]]:
    """Per trick: trials complete/pruned/failed and its best trial (by the first objective)."""
    by: dict[str, list[optuna.trial.FrozenTrial]] = defaultdict(list)
    for t in study.get_trials(deepcopy=False):
        if t.state.is_finished() and not t.user_attrs.get("imbsweep:requeued"):
            by[str(t.user_attrs.get("imbsweep:trick", "?"))].append(t)
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
    sign = -1.0 if direction == "maximize" else 1.0
    rows.sort(key=lambda r: (r["best"] is None, sign * (r["best"] or 0.0)))
    return rows


def _short(key: str) -> str:
    """Short column text; the trick column already names the loss and weights."""
    from ..trick import short_key

    return short_key(key)


def print_summary(study: optuna.Study, objectives: list[tuple[str, str]], n_trials: int) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=140)  # logs and pipes: no wrapping
    metric, direction = objectives[0]
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        console.print(f"study {study.study_name}: no completed trial yet")
        return
    if len(objectives) == 1:
        best = study.best_trial
        console.print(f"best trial #{best.number}: {metric} = {best.value:.4f}  "
                      f"({best.user_attrs.get('imbsweep:trick', '?')}) {best.params}")
    else:
        console.print(f"Pareto front of {', '.join(m for m, _ in objectives)}: {len(study.best_trials)} trials")
        for t in study.best_trials:
            console.print(f"  #{t.number}: {t.values} {t.params}")
    table = Table(title=f"study {study.study_name}: best {metric} per trick (validation)")
    for col in ("trick", "best", "trial", "complete", "pruned", "failed", "its parameters"):
        table.add_column(col, justify="left" if col in ("trick", "its parameters") else "right")
    for r in trick_rows(study, 0, direction):
        params = ", ".join(f"{_short(k)}={v:.3g}" if isinstance(v, float) else f"{_short(k)}={v}"
                           for k, v in r["params"].items() if k not in ("loss", "loss.class_weights"))
        table.add_row(r["trick"], "-" if r["best"] is None else f"{r['best']:.4f}",
                      "-" if r["trial"] is None else str(r["trial"]), str(r["complete"]), str(r["pruned"]),
                      str(r["failed"]), params)
    console.print(table)
    console.print("one trial per trick is not a comparison: re-run the best of each with fresh seeds "
                  f"and compare: imbsweep compare {study.study_name} --reseed 5", style="dim")
