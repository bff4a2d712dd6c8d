"""The plain records of a run, without torch: what ``fit`` tells a reporter when it starts
(``FitInfo``) and what it produced (``Result``). Readers of the store, reporters and the
sweep loop use them without importing the training code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .metrics import Evaluation, ShotGroups
from .posthoc import PosthocScan


@dataclass(frozen=True)
class FitInfo:
    """What a reporter learns when training starts."""

    epochs: int
    objective: str
    direction: str
    device: str
    n_train: int
    class_counts: tuple[int, ...]
    dataset: Any = None  # the Dataset trained on (what a recorder logs as the run's data)


@dataclass
class Result:
    """What a run produced.

    Attributes:
        state: ``complete`` or ``failed``.
        metrics: the selected (best) epoch's ``val/*`` metrics and the ``test/*`` metrics of
            the same weights, plus ``best_epoch``, ``epochs_run`` and ``fit_time_s``.
        objective: the value of ``objective.metric`` at the best epoch (None if failed).
        reason: why a failed run failed.
    """

    state: Literal["complete", "failed"]
    metrics: dict[str, float]
    objective: float | None
    best_epoch: int
    epochs_run: int
    reason: str | None = None
    class_names: tuple[str, ...] = ()
    train_class_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    val: Evaluation | None = None
    test: Evaluation | None = None
    shots: ShotGroups = field(default_factory=ShotGroups)
    posthoc: PosthocScan | None = None
    taunorm: PosthocScan | None = None
