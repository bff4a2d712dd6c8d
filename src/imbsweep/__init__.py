"""imbsweep: hyperparameter sweeps for classification with imbalanced labels.

In a Hydra app swept by imbsweep's sweeper (``hydra/sweeper: imbsweep_optuna``), the task
function may report its progress each epoch::

    import imbsweep

    for epoch in range(1, epochs + 1):
        ...
        imbsweep.report(epoch, val_score)  # a curve in MLflow; raises imbsweep.TrialPruned when pruned
    return val_score

Outside a sweep's trial, :func:`report` does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__version__ = "0.1.0"

__all__ = ["Reporter", "Result", "TrialPruned", "__version__", "fit", "prepare", "report"]


def report(step: int, value: float | Sequence[float]) -> None:
    """Report the objective's value (one per objective) at ``step`` (an epoch) to the sweep
    trial this code runs in: logged in the trial's MLflow run under the objective's name and,
    for a single objective, reported to Optuna, whose pruner may then stop the trial by
    raising :class:`TrialPruned` (let it propagate: the trial is recorded as pruned).

    Does nothing outside a trial of imbsweep's sweeper (a single run, another sweeper).
    """
    from .sweep._usertask import current

    trial = current()
    if trial is not None:
        trial.report(step, value)


def __getattr__(name: str) -> Any:  # keep `import imbsweep` light (no torch at import)
    if name in ("fit", "prepare", "Result"):
        from . import training

        return getattr(training, name)
    if name == "Reporter":
        from .reporting import Reporter

        return Reporter
    if name == "TrialPruned":
        from .sweep._task import TrialPruned

        return TrialPruned
    raise AttributeError(name)
