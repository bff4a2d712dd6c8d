"""imbsweep: hyperparameter sweeps for classification with imbalanced labels."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Reporter", "Result", "__version__", "fit", "prepare"]


def __getattr__(name: str) -> object:  # keep `import imbsweep` light (no torch at import)
    if name in ("fit", "prepare", "Result"):
        from . import training

        return getattr(training, name)
    if name == "Reporter":
        from .reporting import Reporter

        return Reporter
    raise AttributeError(name)
