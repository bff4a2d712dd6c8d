"""Pruning: wall time of a 60-trial random search to reach its best value, without and with
the median pruner. The random sampler is seeded, so both runs draw the same configurations.

    .venv/bin/python bench/pruning.py [--trials 60] [--seed 0] [hydra overrides...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402
from _sweeps import study, sweep  # noqa: E402


def time_to_best(s) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """(best value, seconds from the first trial's start to the best trial's end, its number)."""
    start = min(t.datetime_start for t in s.trials)
    best = s.best_trial
    return best.value, (best.datetime_complete - start).total_seconds(), best.number


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0, help="the random sampler's seed")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    common = ["tricks", "hydra.sweeper.sampler.name=random", f"hydra.sweeper.sampler.seed={args.seed}",
              f"hydra.sweeper.n_trials={args.trials}", *args.overrides]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, pruner in (("unpruned", ["hydra.sweeper.pruner.name=none"]),
                             ("pruned", ["hydra.sweeper.pruner.name=median"])):
            total = sweep(Path(tmp), *common, f"hydra.sweeper.study_name={name}", *pruner)
            s = study(Path(tmp), name)
            n_pruned = sum(t.state.name == "PRUNED" for t in s.trials)
            out[name] = (*time_to_best(s), total, n_pruned)
    print(f"machine: {machine()}")
    print(f"`imbsweep sweep {' '.join(common)}` with pruner none vs median (tricks.yaml's settings)")
    for name, (best, t_best, number, total, n_pruned) in out.items():
        print(f"{name:9s}: best val/balanced_acc {best:.4f} (trial {number}) reached after {t_best:.1f} s; "
              f"whole sweep {total:.1f} s; {n_pruned} pruned")
    (b0, t0, *_), (b1, t1, *_) = out["unpruned"], out["pruned"]
    print(f"speed-up to reach the best value: {t0 / t1:.2f}x (best {b0:.4f} unpruned vs {b1:.4f} pruned)")


if __name__ == "__main__":
    main()
