"""Sweep overhead: what the platform costs per trial, beyond training.

Short trials are where it shows: by default ``model=logreg trainer.epochs=3`` on
MNIST-1D-LT, 20 trials of ``tricks_joint`` with TPE in its random start-up phase throughout
(``n_startup_trials`` above the budget: a command that code from before the sampler became a
config group runs too, for ``--before``), no pruning, no baseline
trial, one worker. Each of ``--repeats`` paired repetitions runs, on the same configurations
(the platform's study picks them; the others replay its parameters):

A. ``imbsweep sweep …`` (the real CLI, a fresh study): the sweep loop, each trial's start to
   the next one's (Optuna's timestamps): the median of these periods, and their mean (which
   also carries the one-time costs of the process's first trial, such as torch's optimizer
   importing ``torch._dynamo``, ~1 s);
B. ``fit(cfg, Reporter())`` called directly, the config composed beforehand (outside the
   timer): training, validation, test evaluation and the post-hoc scan, nothing recorded;
B+. the same with composing the config (Hydra's compose API) inside the timer;
C. what a user writes by hand: ``study.optimize`` whose objective composes the config and
   calls ``fit``, with optuna-integration's ``MLflowCallback`` (a run with params and the
   final value).

B, B+ and C are interleaved configuration by configuration; A runs before them in even
repetitions and after them in odd ones, so that a slow spell of this shared machine does not
land on one variant. Reported: per repetition the mean per trial of each variant, then the
median over repetitions of A − B, A − B+ and A − C, where each variant is the median over its
trials (the issue's measure), and A's mean beside it.

    .venv/bin/python bench/sweep_overhead.py [--trials 20] [--repeats 4] [--before SRC] [hydra overrides...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # bench/ is scripts, not a package
from _common import config, machine  # noqa: E402
from _sweeps import loop_seconds, study, sweep, trial_periods  # noqa: E402

SWEEP = ["tricks_joint", "++hydra.sweeper.sampler.n_startup_trials=100000", "hydra.sweeper.pruner.name=none",
         "hydra.sweeper.baseline=null"]
DEFAULT = ["model=logreg", "trainer.epochs=3"]


def overrides(params: dict[str, object], extra: list[str]) -> list[str]:
    from imbsweep.sweep._space import override

    return [*extra, *(override(k, v) for k, v in params.items())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--before", metavar="SRC", help="also run A with the imbsweep in SRC (the src/ folder of "
                    "a `git worktree` of an older commit), in the same repetitions: before and after side by side")
    ap.add_argument("overrides", nargs="*", help=f"hydra overrides (default: {' '.join(DEFAULT)})")
    args = ap.parse_args()
    extra = args.overrides or DEFAULT
    import optuna
    from optuna_integration.mlflow import MLflowCallback

    from imbsweep.reporting import Reporter
    from imbsweep.training import fit, prepare

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = [f"state_dir={work}/mlruns", *extra]
        prepare(config(base))  # the dataset cache is warm for every variant
        fit(config(base + ["trainer.epochs=1"]), Reporter())  # warm-up, untimed
        sweep(work, *SWEEP, "hydra.sweeper.study_name=warmup", "hydra.sweeper.n_trials=2", *extra)  # store made
        hand = optuna.create_study(direction="maximize")
        cb = MLflowCallback(tracking_uri=f"sqlite:///{work}/hand.db", metric_name="val/balanced_acc")
        for rep in range(args.repeats):
            name = f"overhead{rep}"  # a fresh study, the same seed: the same configurations each time
            t_b: list[float] = []  # seconds per trial: fit, compose + fit, by hand
            t_bc: list[float] = []
            t_c: list[float] = []

            def run_a(name: str = name, src: str | None = None) -> tuple[float, float]:
                sweep(work, *SWEEP, f"hydra.sweeper.study_name={name}", f"hydra.sweeper.n_trials={args.trials}",
                      *extra, src=src)
                s = study(work, name)
                return statistics.median(trial_periods(s)), loop_seconds(s) / args.trials

            def run_bc(params_list: list[dict[str, Any]], times: tuple[list[float], ...] = (t_b, t_bc, t_c)) -> None:
                for i, params in enumerate(params_list):
                    hand.enqueue_trial(params)
                    cfg = config(overrides(params, base))
                    variants = [
                        (times[0], lambda cfg=cfg: fit(cfg, Reporter())),
                        (times[1], lambda params=params: fit(config(overrides(params, base)), Reporter())),
                        (times[2], lambda: hand.optimize(
                            lambda trial: float(fit(config(overrides(trial.params, base)), Reporter()).objective),
                            n_trials=1, callbacks=[cb])),
                    ]
                    for out, run in variants[i % 3:] + variants[:i % 3]:
                        t = time.perf_counter()
                        run()
                        out.append(time.perf_counter() - t)

            a0 = None
            if rep % 2 == 0:
                a = run_a()
                if args.before:
                    a0 = run_a(f"{name}before", args.before)
                params_list = [t.params for t in sorted(study(work, name).trials, key=lambda t: t.number)]
                run_bc(params_list)
            else:  # the configurations come from the seeded sampler: the previous study has them
                prev = sorted(study(work, f"overhead{rep - 1}").trials, key=lambda t: t.number)
                run_bc([t.params for t in prev])
                if args.before:
                    a0 = run_a(f"{name}before", args.before)
                a = run_a()
            row = {"A": a[0], "A mean": a[1], "B": statistics.median(t_b), "B+": statistics.median(t_bc),
                   "C": statistics.median(t_c)}
            if a0 is not None:
                row["A before"], row["A before mean"] = a0
            rows.append(row)
            shown = "  ".join(f"{k} {1000 * v:.0f} ms" for k, v in row.items())
            print(f"repetition {rep + 1}/{args.repeats}: {shown}", file=sys.stderr, flush=True)

    def med(f: Any) -> float:
        return 1000 * statistics.median(f(r) for r in rows)

    print(f"machine: {machine()}")
    print(f"{args.repeats} paired repetitions of {args.trials} trials: `imbsweep sweep {' '.join(SWEEP)} "
          f"{' '.join(extra)}`")
    print("| variant | ms per trial (median over trials; A mean: mean), per repetition | median of repetitions |")
    print("| --- | --- | --- |")
    labels = {"A": "A `imbsweep sweep` loop (median period)", "A mean": "A, mean period",
              "B": "B `fit` (config composed before)", "B+": "B+ compose + `fit`",
              "C": "C `study.optimize` + `fit` + `MLflowCallback`"}
    if args.before:
        labels["A before"] = f"A with {args.before} (median period)"
        labels["A before mean"] = f"A with {args.before}, mean period"
    for k, label in labels.items():
        print(f"| {label} | {', '.join(f'{1000 * r[k]:.0f}' for r in rows)} | {med(lambda r, k=k: r[k]):.0f} |")
    print(f"median of paired differences: A - B {med(lambda r: r['A'] - r['B']):+.0f} ms, "
          f"A - B+ {med(lambda r: r['A'] - r['B+']):+.0f} ms, A - C {med(lambda r: r['A'] - r['C']):+.0f} ms")
    if args.before:
        print(f"before: A - B {med(lambda r: r['A before'] - r['B']):+.0f} ms; "
              f"A / A before {statistics.median(r['A'] / r['A before'] for r in rows):.2f}")


if __name__ == "__main__":
    main()
