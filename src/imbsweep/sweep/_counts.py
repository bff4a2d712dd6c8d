"""A study's trials counted and ranked: what the loop, the progress bar, the parent run and
the summary read (the budget counts finished trials, re-queued failures aside)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import optuna

from ..names import ATTR_REQUEUED, posthoc_attr
from ..posthoc import POSTHOC_METRICS


def counts(study: optuna.Study | Sequence[optuna.Study]) -> Counter[str]:
    """Trials by state (summed over several studies: a tournament's arms); failed trials
    that were re-queued do not count."""
    c: Counter[str] = Counter()
    for s in ([study] if isinstance(study, optuna.Study) else study):
        for t in s.get_trials(deepcopy=False):
            if t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get(ATTR_REQUEUED):
                continue
            c[t.state.name.lower()] += 1
    c["finished"] = c["complete"] + c["pruned"] + c["fail"]
    return c  # also "running" and "waiting"


def best_trial(studies: Sequence[optuna.Study], direction: str) -> optuna.trial.FrozenTrial | None:
    """The best complete trial over several single-objective studies (None: none complete)."""
    done = [t for s in studies for t in s.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if not done:
        return None
    pick = max if direction == "maximize" else min
    return pick(done, key=lambda t: float(t.values[0]))


def posthoc_metric(metric: str, kind: str = "posthoc") -> str | None:
    """The post-hoc twin every run logs for the objective ``metric`` (None: it has none);
    ``kind`` is one of ``posthoc.POSTHOC_KINDS``, whose scans report the same metrics."""
    split, _, name = metric.partition("/")
    return f"{metric}_{kind}" if split == "val" and name in POSTHOC_METRICS else None


def best_posthoc(study: optuna.Study, direction: str, kind: str = "posthoc") -> optuna.trial.FrozenTrial | None:
    """The complete trial with the best value after the post-hoc ``kind`` (ties: the lower number)."""
    attr = posthoc_attr(kind)
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get(attr) is not None]
    if not done:
        return None
    sign = -1.0 if direction == "maximize" else 1.0
    return min(done, key=lambda t: (sign * float(t.user_attrs[attr]), t.number))
