"""Training inside a sweep trial against the same training right after it, in the same process.

Runs ``imbsweep sweep`` (issue 14's short-trial case by default: ``model=logreg
trainer.epochs=3``, 30 trials of ``tricks_joint``, random sampler, no pruning, no baseline) in
this process; after each trial's ``fit`` (its reporters: the MLflow run, Optuna's reports), the
same configuration is prepared and fitted again with a no-op reporter. Prints the medians and
the paired differences (the first two trials left out).

    .venv/bin/python bench/fit_in_sweep.py [--trials 30] [hydra overrides...]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # bench/ is scripts, not a package
from _common import machine  # noqa: E402

SWEEP = ["tricks_joint", "hydra/sweeper/sampler=random", "hydra.sweeper.pruner.name=none",
         "hydra.sweeper.baseline=null"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    import imbsweep.training as tr
    from imbsweep.reporting import Reporter

    acc: dict[str, list[float]] = {"in the trial": [], "again after it": []}
    fit = tr.fit

    def timed_fit(cfg: Any, reporter: Any = None, setup: Any = None) -> Any:
        t = time.perf_counter()
        try:
            return fit(cfg, reporter, setup)
        finally:
            acc["in the trial"].append(time.perf_counter() - t)
            again = copy.deepcopy(cfg)
            ready = tr.prepare(again)
            t = time.perf_counter()
            fit(again, Reporter(), ready)
            acc["again after it"].append(time.perf_counter() - t)

    tr.fit = timed_fit
    from imbsweep.cli import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        extra = args.overrides or ["model=logreg", "trainer.epochs=3"]
        cli(["sweep", *SWEEP, f"hydra.sweeper.n_trials={args.trials}", "hydra.sweeper.study_name=fit", *extra])
    print(f"machine: {machine()}")
    for k, v in acc.items():
        print(f"fit {k}: median {1000 * statistics.median(v[2:]):.1f} ms")
    pairs = [1000 * (a - b) for a, b in zip(acc["in the trial"][2:], acc["again after it"][2:], strict=True)]
    print(f"paired difference: median {statistics.median(pairs):+.1f} ms over {len(pairs)} trials")


if __name__ == "__main__":
    main()
