"""Pruning: wall time of a 60-trial random search to reach its best value, without and with
a pruner (tricks.yaml's unless ``--pruner`` says otherwise). The random sampler
is seeded, so every run draws the same configurations; the search without a pruner runs once
and each ``--pruner`` variant is measured against it.

    .venv/bin/python bench/pruning.py [--trials 60] [--seed 0] [--pruner "OVERRIDES" ...] [hydra overrides...]

e.g. ``--pruner "" --pruner "hydra.sweeper.pruner.name=median +hydra.sweeper.pruner.n_startup_trials=8
+hydra.sweeper.pruner.n_warmup_steps=10"`` (each variant: space-separated Hydra overrides; "" is
tricks_joint.yaml's pruner as it is).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402
from _sweeps import study, sweep  # noqa: E402


def reaching(trials: list[Any], value: float) -> Any:
    """The first complete trial (by end time) whose value reached ``value`` (maximized); None
    if none did, i.e. the pruner stopped the configuration that would have."""
    hits = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None and t.value >= value]
    return min(hits, key=lambda t: t.datetime_complete, default=None)


def best_complete(trials: list[Any]) -> Any:
    return max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)


def epochs(trials: list[Any]) -> int:
    """Epochs trained: the steps the trials reported to the pruner."""
    return sum(len(t.intermediate_values) for t in trials)


def cost_until(trials: list[Any], trial: Any) -> tuple[float, int]:
    """(seconds from the first trial's start to ``trial``'s end, epochs trained by then).

    The epochs are the steps reported to the pruner by every trial that had started by
    then: the work, free of the shared machine's noise that moves the seconds by tens of
    percent between two sweeps (the seeded sampler and deterministic CPU training make the
    epoch counts exact)."""
    start = min(t.datetime_start for t in trials)
    before = [t for t in trials if t.datetime_start <= trial.datetime_complete]
    return (trial.datetime_complete - start).total_seconds(), epochs(before)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0, help="the random sampler's seed")
    ap.add_argument("--pruner", action="append", metavar="OVERRIDES",
                    help="a pruned variant, as Hydra overrides separated by spaces (repeatable; "
                         "default: tricks_joint.yaml's pruner as it is)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    variants = args.pruner or [""]
    common = ["tricks_joint", "hydra/sweeper/sampler=random", f"hydra.sweeper.sampler.seed={args.seed}",
              f"hydra.sweeper.n_trials={args.trials}", *args.overrides]
    runs = [("unpruned", ["hydra.sweeper.pruner.name=none"])]
    runs += [(f"pruned{i}", v.split()) for i, v in enumerate(variants)]
    trials: dict[str, list[Any]] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, pruner in runs:
            seconds[name] = sweep(Path(tmp), *common, f"hydra.sweeper.study_name={name}", *pruner)
            trials[name] = study(Path(tmp), name).trials
    print(f"machine: {machine()}")
    print(f"`imbsweep sweep {' '.join(common)}` without a pruner, then with each variant")
    base = trials["unpruned"]
    best = best_complete(base)
    t0, e0 = cost_until(base, best)
    w0 = epochs(base)
    print(f"unpruned: best val/balanced_acc {best.value:.4f} (trial {best.number}) reached after "
          f"{t0:.1f} s, {e0} epochs; whole sweep {seconds['unpruned']:.1f} s, {w0} epochs")
    for (name, _), variant in zip(runs[1:], variants, strict=True):
        ts = trials[name]
        n_pruned = sum(t.state.name == "PRUNED" for t in ts)
        w1 = epochs(ts)
        label = variant or "tricks_joint.yaml's pruner"
        print(f"{label}: whole sweep {seconds[name]:.1f} s ({seconds['unpruned'] / seconds[name]:.2f}x), "
              f"{w1} epochs ({w0 / w1:.2f}x); {n_pruned} pruned")
        hit = reaching(ts, best.value)
        if hit is None:
            own = best_complete(ts)
            print(f"  speed-up to reach the best value: none - never reached {best.value:.4f} (the pruner "
                  f"stopped trial {best.number}; its own best {own.value:.4f}, trial {own.number})")
        else:
            t1, e1 = cost_until(ts, hit)
            print(f"  speed-up to reach the best value {best.value:.4f} (trial {hit.number}): "
                  f"{t0 / t1:.2f}x in wall time ({t0:.1f} s vs {t1:.1f} s), {e0 / e1:.2f}x in epochs "
                  f"({e0} vs {e1})")


if __name__ == "__main__":
    main()
