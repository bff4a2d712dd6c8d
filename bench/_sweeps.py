"""Helpers for the sweep benchmarks: run the real CLI, read the study back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna

CLI = [sys.executable, "-m", "imbsweep"]


def sweep(workdir: Path, *overrides: str, src: str | None = None) -> float:
    """``imbsweep sweep ...`` in ``workdir``; returns its wall time in seconds. ``src``: run
    the imbsweep of another checkout's ``src/`` (a ``git worktree`` of an older commit)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if src:
        env["PYTHONPATH"] = src
    t = time.perf_counter()
    subprocess.run([*CLI, "sweep", *overrides], cwd=workdir, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def study(workdir: Path, name: str) -> optuna.Study:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = workdir / "mlruns" / "optuna" / "journal.log"
    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(journal))))


def loop_seconds(s: optuna.Study) -> float:
    """From the first trial's start to the last one's end (the sweep loop, without the
    command's one-time start-up)."""
    trials = [t for t in s.trials if t.datetime_start and t.datetime_complete]
    start = min(t.datetime_start for t in trials)  # type: ignore[type-var]
    end = max(t.datetime_complete for t in trials)  # type: ignore[type-var]
    return (end - start).total_seconds()


def trial_periods(s: optuna.Study) -> list[float]:
    """Seconds from each trial's start to the next one's: with one worker, the whole cost of a
    trial in the sweep loop (its job, its records, the next ask)."""
    starts = sorted(t.datetime_start for t in s.trials if t.datetime_start)
    return [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
