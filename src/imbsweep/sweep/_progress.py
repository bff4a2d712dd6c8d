"""The study's progress bar: finished / pruned / failed of the target, best value, ETA."""

from __future__ import annotations

from types import TracebackType

import optuna


class SweepProgress:
    def __init__(self, study_name: str, n_trials: int, objectives: list[tuple[str, str]],
                 show: bool = True) -> None:
        from ..reporting import make_progress

        self.objectives, self.show = objectives, show
        self.progress = make_progress(f"study {study_name}", "trials")
        self.task = self.progress.add_task("sweep", total=n_trials, status="")

    def __enter__(self) -> SweepProgress:
        if self.show:
            self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.show:
            self.progress.stop()

    def update(self, study: optuna.Study) -> None:
        from ._runner import counts

        c = counts(study)
        detail = f"· {c['pruned']} pruned · {c['fail']} failed"
        if len(self.objectives) == 1 and c["complete"]:
            detail += f" · best {self.objectives[0][0]} {study.best_value:.4f}"
        elif c["complete"]:
            detail += f" · {len(study.best_trials)} on the Pareto front"
        self.progress.update(self.task, completed=min(c["finished"], self.progress.tasks[0].total or 0),
                             status=detail)


