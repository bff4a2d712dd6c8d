"""Parallel workers: trials per hour of the same study with 1 and with 2 worker processes
(``hydra.sweeper.n_jobs``), pruning off, the random sampler seeded.

    .venv/bin/python bench/parallel.py [--trials 16] [hydra overrides...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402
from _sweeps import sweep  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    common = ["tricks_joint", "hydra/sweeper/sampler=random", "hydra.sweeper.pruner.name=none",
              f"hydra.sweeper.n_trials={args.trials}", *args.overrides]
    rate = {}
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in (1, 2):
            total = sweep(Path(tmp), *common, f"hydra.sweeper.study_name=jobs{jobs}", f"hydra.sweeper.n_jobs={jobs}")
            rate[jobs] = args.trials / total * 3600
            print(f"n_jobs={jobs}: {args.trials} trials in {total:.1f} s = {rate[jobs]:.0f} trials/hour", flush=True)
    print(f"machine: {machine()}")
    print(f"`imbsweep sweep {' '.join(common)}` (whole command, start-up included)")
    print(f"speed-up 2 vs 1 workers: {rate[2] / rate[1]:.2f}x")


if __name__ == "__main__":
    main()
