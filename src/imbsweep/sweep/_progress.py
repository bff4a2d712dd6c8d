"""The study's progress bar: finished / pruned / failed of the target, best value, ETA."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import optuna

from ..names import ATTR_ARM
from ._counts import best_trial, counts


class SweepProgress:
    def __init__(self, study_name: str, n_trials: int, objectives: list[tuple[str, str]],
                 show: bool = True) -> None:
        from ..reporting import make_progress

        self.objectives, self.show = objectives, show
        self.progress = make_progress(study_name, "trials")
        self.task = self.progress.add_task("sweep", total=n_trials, status="")

    def __enter__(self) -> SweepProgress:
        if self.show:
            self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.show:
            self.progress.stop()

    def update(self, studies: Sequence[optuna.Study]) -> None:

        c = counts(studies)
        detail = f"{c['pruned']} pruned · {c['fail']} failed"
        if len(self.objectives) == 1 and c["complete"]:
            best = best_trial(studies, self.objectives[0][1])
            assert best is not None
            arm = best.user_attrs.get(ATTR_ARM)
            detail = (f"best {best.values[0]:.4f} {self.objectives[0][0]}" + (f" ({arm})" if arm else "")
                      + f" · {detail}")
        elif c["complete"]:
            detail += f" · {sum(len(s.best_trials) for s in studies)} on the Pareto front(s)"
        self.progress.update(self.task, completed=min(c["finished"], self.progress.tasks[0].total or 0),
                             status=detail)
