"""Where a sweep trial's time goes: wall-clock accumulators around the steps of the sweep loop,
the job and the trial, in one ``imbsweep sweep`` run in this process (issue 14's short-trial
case by default: ``model=logreg trainer.epochs=3``, 40 trials of ``tricks_joint``, random
sampler, no pruning, no baseline). Prints the median of each step over its calls (the
first two calls left out: one-time costs); medians do not add up exactly.

    .venv/bin/python bench/trial_steps.py [--trials 40] [hydra overrides...]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # bench/ is scripts, not a package
from _common import machine  # noqa: E402

STEPS = [  # module:qualified name, in the order a trial meets them
    "imbsweep.sweep._runner:Sweep._claim", "imbsweep.sweep._space:SearchSpace.sample",
    "hydra._internal.core_plugins.basic_launcher:run_job", "imbsweep.sweep._usertask:TrialTask.__call__",
    "imbsweep.sweep._settings:Settings.of", "imbsweep.sweep._study:make_pruner",
    "imbsweep.tracking:MlflowRun.__init__", "imbsweep.tracking:MlflowRun.__enter__",
    "optuna.trial:Trial.set_user_attr", "imbsweep.training:prepare", "imbsweep.training:fit",
    "imbsweep.sweep._task:OptunaReporter.on_epoch_end", "imbsweep.tracking:MlflowRun.on_fit_end",
    "imbsweep.artifacts:write_files",
    "imbsweep.tracking:MlflowRun.__exit__",
    "hydra._internal.core_plugins.basic_launcher:BasicLauncher.launch",  # (the job: Hydra's launcher)
    "imbsweep.sweep._runner:Sweep._tell", "imbsweep.sweep._runner:Sweep._one_trial",
]
SWEEP = ["tricks_joint", "hydra/sweeper/sampler=random", "hydra.sweeper.pruner.name=none",
         "hydra.sweeper.baseline=null"]


def timed(path: str, acc: dict[str, list[float]]) -> None:
    module, _, qualname = path.partition(":")
    owner: Any = importlib.import_module(module)
    *outer, name = qualname.split(".")
    for part in outer:
        owner = getattr(owner, part)
    fn: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            acc.setdefault(path, []).append(time.perf_counter() - t)

    setattr(owner, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    acc: dict[str, list[float]] = {}
    for path in STEPS:
        timed(path, acc)
    from imbsweep.cli import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        extra = args.overrides or ["model=logreg", "trainer.epochs=3"]
        cli(["sweep", *SWEEP, f"hydra.sweeper.n_trials={args.trials}", "hydra.sweeper.study_name=steps", *extra])
    print(f"machine: {machine()}")
    t = os.times()
    print(f"CPU: this process {t.user + t.system:.1f} s, its child processes "
          f"{t.children_user + t.children_system:.1f} s, for {args.trials} trials")
    print("| step | calls | median ms |")
    print("| --- | --- | --- |")
    for path in STEPS:
        calls = acc.get(path, [])
        if calls:
            kept = calls[2:] if len(calls) > 4 else calls
            print(f"| `{path.split(':')[1]}` | {len(calls)} | {1000 * statistics.median(kept):.2f} |")


if __name__ == "__main__":
    main()
