"""imbsweep's Optuna sweeper for Hydra (``hydra/sweeper: imbsweep_optuna``).

Kept light: Hydra imports every installed plugin when any Hydra app starts, so the heavy
code lives in ``imbsweep.sweep`` and is imported only when a sweep runs.
"""
