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
    best = s.best_trial
    return best.value, _seconds(s, best), best.number


def _seconds(s, trial) -> float:  # type: ignore[no-untyped-def]
    start = min(t.datetime_start for t in s.trials)
    return float((trial.datetime_complete - start).total_seconds())


def time_to_reach(s, value: float) -> float | None:  # type: ignore[no-untyped-def]
    """Seconds until a complete trial first reached ``value`` (maximized); None if none did,
    i.e. the pruner stopped the configuration that would have."""
    hits = [t for t in s.trials if t.state.name == "COMPLETE" and t.value is not None and t.value >= value]
    return min((_seconds(s, t) for t in hits), default=None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0, help="the random sampler's seed")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    common = ["tricks", "hydra.sweeper.sampler.name=random", f"hydra.sweeper.sampler.seed={args.seed}",
              f"hydra.sweeper.n_trials={args.trials}", *args.overrides]
    out = {}
    studies = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, pruner in (("unpruned", ["hydra.sweeper.pruner.name=none"]),
                             ("pruned", ["hydra.sweeper.pruner.name=median"])):
            total = sweep(Path(tmp), *common, f"hydra.sweeper.study_name={name}", *pruner)
            s = studies[name] = study(Path(tmp), name)
            n_pruned = sum(t.state.name == "PRUNED" for t in s.trials)
            out[name] = (*time_to_best(s), total, n_pruned)
    print(f"machine: {machine()}")
    print(f"`imbsweep sweep {' '.join(common)}` with pruner none vs median (tricks.yaml's settings "
          "unless overridden)")
    for name, (best, t_best, number, total, n_pruned) in out.items():
        print(f"{name:9s}: best val/balanced_acc {best:.4f} (trial {number}) reached after {t_best:.1f} s; "
              f"whole sweep {total:.1f} s; {n_pruned} pruned")
    (b0, t0, *_), (b1, t1, *_) = out["unpruned"], out["pruned"]
    reach = time_to_reach(studies["pruned"], b0)
    if reach is None:
        print(f"speed-up to reach the best value: none - the pruned search never reached {b0:.4f} "
              f"(the pruner stopped that configuration; its own best {b1:.4f} after {t1:.1f} s)")
    else:
        print(f"speed-up to reach the best value {b0:.4f}: {t0 / reach:.2f}x ({t0:.1f} s vs {reach:.1f} s)")
    n0, n1 = out["unpruned"][3], out["pruned"][3]
    print(f"whole sweep: {n0 / n1:.2f}x")


if __name__ == "__main__":
    main()
