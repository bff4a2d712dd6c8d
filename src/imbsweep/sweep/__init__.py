"""Sweeps: the Optuna search behind ``hydra/sweeper: imbsweep_optuna``.

The names below are imported on first use (PEP 562): a reader of a study's search space
(``imbsweep compare``) needs ``SearchSpace`` and Optuna's distributions, not the trial runner,
which imports torch (a second of start-up).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._counts import counts
    from ._runner import Sweep, SweepStopped, run_sweep
    from ._space import SearchSpace, parse
    from ._study import PRUNERS, SAMPLERS, make_pruner, make_sampler, open_storage
    from ._task import OptunaReporter, TrialPruned, run_trial

_WHERE = {
    "Sweep": "_runner", "SweepStopped": "_runner", "counts": "_counts", "run_sweep": "_runner",
    "SearchSpace": "_space", "parse": "_space",
    "PRUNERS": "_study", "SAMPLERS": "_study", "make_pruner": "_study", "make_sampler": "_study",
    "open_storage": "_study",
    "OptunaReporter": "_task", "TrialPruned": "_task", "run_trial": "_task",
}

__all__ = ["PRUNERS", "SAMPLERS", "OptunaReporter", "SearchSpace", "Sweep",
           "SweepStopped", "TrialPruned", "counts", "make_pruner", "make_sampler", "open_storage",
           "parse", "run_sweep", "run_trial"]
assert sorted(__all__) == sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
