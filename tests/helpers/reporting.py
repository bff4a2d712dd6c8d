"""A reporter that records what ``fit`` tells it."""

from __future__ import annotations

from collections.abc import Mapping

from imbsweep.reporting import FitInfo, Reporter
from imbsweep.training import Result


class Recorder(Reporter):
    """Keeps the fit info, every epoch's metrics and the result; ``stop_at``: stop the fit there."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.info: FitInfo | None = None
        self.epochs: list[tuple[int, dict[str, float]]] = []
        self.result: Result | None = None
        self.stop_at = stop_at

    def on_fit_start(self, info: FitInfo) -> None:
        self.info = info

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.epochs.append((epoch, dict(metrics)))
        if epoch == self.stop_at:
            raise StopIteration("stop requested by the reporter")

    def on_fit_end(self, result: Result) -> None:
        self.result = result
