"""Sweeps: the Optuna search behind ``hydra/sweeper: imbsweep_optuna``."""

from __future__ import annotations

from ._runner import Sweep, SweepStopped, counts, run_sweep
from ._space import SearchSpace, parse
from ._study import PRUNERS, SAMPLERS, make_pruner, make_sampler, open_storage
from ._task import CONTEXT_KEY, OptunaReporter, TrialPruned, run_trial

__all__ = ["CONTEXT_KEY", "PRUNERS", "SAMPLERS", "OptunaReporter", "SearchSpace", "Sweep",
           "SweepStopped", "TrialPruned", "counts", "make_pruner", "make_sampler", "open_storage",
           "parse", "run_sweep", "run_trial"]
