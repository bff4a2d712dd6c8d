"""Reporters: what ``fit`` tells the outside world. ``fit`` knows nothing about MLflow or
Optuna; it calls a reporter, and the reporter decides what to record, show or stop."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .records import FitInfo, Result

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


class Reporter:
    """Does nothing; subclasses override what they need. ``fit`` calls ``on_fit_start``
    once, ``on_epoch_end`` after every epoch's validation, ``on_fit_end`` once with the
    result (also for a failed result). A reporter may raise from ``on_epoch_end`` to stop
    training (a sweeper's pruning does)."""

    def on_fit_start(self, info: FitInfo) -> None:
        """Training is about to start."""

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """One epoch (1-based) is done; ``metrics`` has ``train/*`` and ``val/*``."""

    def on_fit_end(self, result: Result) -> None:
        """Training is over; ``result`` holds the selected epoch's metrics."""


class CompositeReporter(Reporter):
    """Forwards every call to several reporters, in order."""

    def __init__(self, reporters: Sequence[Reporter]) -> None:
        self.reporters = list(reporters)

    def on_fit_start(self, info: FitInfo) -> None:
        for r in self.reporters:
            r.on_fit_start(info)

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        for r in self.reporters:
            r.on_epoch_end(epoch, metrics)

    def on_fit_end(self, result: Result) -> None:
        for r in self.reporters:
            r.on_fit_end(result)


def make_progress(label: str, unit: str, console: Console | None = None) -> Progress:
    """The rich progress bar both single runs and sweeps show on stderr:
    ``label ━━━━╺━━ 7/20 unit 0:00:12 eta 0:00:30 <status>``; the task carries a ``status``
    field. On a terminal the line fits its width: the status is cut first (with …), then the
    label; into a file (a log), the last state is one whole line."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column

    console = console or Console(stderr=True)
    if not console.is_terminal:
        console = Console(file=console.file, width=max(console.width, 400))
    return Progress(
        TextColumn(f"[bold]{label}", table_column=Column(no_wrap=True, overflow="ellipsis",
                                                          max_width=32 if console.is_terminal else None)),
        BarColumn(bar_width=16), MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn(), TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
        console=console, transient=False, expand=console.is_terminal)


class ProgressReporter(Reporter):
    """A rich progress bar over epochs on stderr, with the objective's last and best value."""

    def __init__(self, description: str = "training") -> None:
        self.description = description
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._best: float | None = None
        self._info: FitInfo | None = None

    def on_fit_start(self, info: FitInfo) -> None:
        self._info = info
        self._progress = make_progress(self.description, "epochs")
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=info.epochs, status="")

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if self._progress is None or self._info is None or self._task is None:
            return
        value = metrics.get(self._info.objective)
        if value is not None:
            better = max if self._info.direction == "maximize" else min
            self._best = value if self._best is None else better(self._best, value)
        status = (f"{self._info.objective} {value:.4f} (best {self._best:.4f})"
                  if value is not None and self._best is not None else "")
        self._progress.update(self._task, completed=epoch, status=status)

    def on_fit_end(self, result: Result) -> None:
        self.close()

    def close(self) -> None:
        """Stop drawing (idempotent; also called when training is interrupted)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
