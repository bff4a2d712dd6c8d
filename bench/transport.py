"""The MLflow transport decided by measurement (issue "A house without home-made plumbing"):
the default tournament's trials (sweeps/tricks.yaml: MNIST-1D-LT, cnn1d, 40 epochs, one trial
of each of its 13 trained arms) swept with ``tracking.spool=true`` (a writer process applies
the trials' MLflow writes) and ``false`` (each trial writes its run in its own process), side by
side, at several worker counts.

Each variant has its own working folder whose store, dataset cache and journal already exist
(a one-trial sweep made them), so what differs is only how the trials' records reach MLflow.
The variants alternate (A B, then B A, ...) and each repetition is a new study in the same
folder. Printed: the command's wall and the CPU of the command and its children, per trial.

    .venv/bin/python bench/transport.py [--repeats 3] [--jobs 1 2 4] [--trials-per-arm 1]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # bench/ is scripts, not a package
from _sweeps import sweep  # noqa: E402

ARMS = 13  # sweeps/tricks.yaml's trained arms (its two post-hoc arms train nothing)


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--trials-per-arm", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args()
    n = ARMS * args.trials_per_arm
    common = ("tricks", f"hydra.sweeper.trials_per_arm={args.trials_per_arm}", f"trainer.epochs={args.epochs}")
    print(f"{n} trials a sweep (sweeps/tricks.yaml, {args.epochs} epochs), repeats {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for spool in ("true", "false"):
            d = Path(tmp) / f"spool-{spool}"
            d.mkdir()
            sweep(d, "smoke", f"tracking.spool={spool}", "hydra.sweeper.n_trials=1", "hydra.sweeper.study_name=warm",
                  "data=mnist1d_lt")  # the store, the journal, the dataset's cache
            dirs[spool] = d
        walls: dict[tuple[int, str], list[float]] = {}
        cpus: dict[tuple[int, str], list[float]] = {}
        for rep in range(args.repeats):
            for jobs in args.jobs:
                order = ("true", "false") if (rep + jobs) % 2 == 0 else ("false", "true")
                for spool in order:
                    before = children_cpu()
                    t = sweep(dirs[spool], *common, f"hydra.sweeper.n_jobs={jobs}", f"tracking.spool={spool}",
                              f"hydra.sweeper.study_name=r{rep}j{jobs}")
                    cpu = children_cpu() - before
                    walls.setdefault((jobs, spool), []).append(t / n)
                    cpus.setdefault((jobs, spool), []).append(cpu / n)
                    print(f"  rep {rep} n_jobs={jobs} spool={spool}: {t:6.1f} s wall, {cpu:6.1f} s CPU",
                          flush=True)
        print(f"\n{'n_jobs':>6} | {'spool':>5} | wall s/trial (median) | CPU s/trial (median) | wall vs false")
        for jobs in args.jobs:
            off = statistics.median(walls[(jobs, "false")])
            for spool in ("true", "false"):
                w, c = statistics.median(walls[(jobs, spool)]), statistics.median(cpus[(jobs, spool)])
                print(f"{jobs:>6} | {spool:>5} | {w:21.3f} | {c:20.3f} | {w / off - 1:+.1%}")
        print(f"\n{time.strftime('%Y-%m-%d %H:%M')}")


if __name__ == "__main__":
    main()
