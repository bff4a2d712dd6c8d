"""Sweep overhead: what the platform costs per trial, beyond training.

1. In-run decomposition (robust on a noisy machine): the platform's sweep loop, from the
   first trial's start to the last one's end (Optuna timestamps), against the training time
   each trial logged itself (``fit_time_s`` in MLflow: the epoch loop of ``fit``). The rest
   is the platform: Hydra composing and launching the job, building data/model (dataset
   cached), MLflow recording, Optuna ask/tell on the journal file, test evaluation.
2. Side by side, on the same N configurations (the platform's study picks them; the others
   replay its parameters), interleaved per configuration to share the machine's noise:
   B. ``fit`` called directly with a no-op reporter (config composed per trial);
   C. what a user writes by hand: ``study.optimize`` calling ``fit``, with optuna-integration's
      ``MLflowCallback`` recording params and the final value.

    .venv/bin/python bench/sweep_overhead.py [--trials 10] [hydra overrides...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # bench/ is scripts, not a package
from _common import config, machine  # noqa: E402
from _sweeps import loop_seconds, study, sweep  # noqa: E402

SWEEP = ["tricks_joint", "hydra.sweeper.study_name=overhead", "hydra.sweeper.sampler.name=random",
         "hydra.sweeper.pruner.name=none", "hydra.sweeper.baseline=null"]


def overrides(params: dict[str, object], extra: list[str]) -> list[str]:
    from imbsweep.sweep._space import override

    return [*extra, *(override(k, v) for k, v in params.items())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    import optuna
    from mlflow import MlflowClient
    from optuna_integration.mlflow import MLflowCallback

    from imbsweep.reporting import Reporter
    from imbsweep.training import fit, prepare

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t_loop, t_cmd, train, t_b, t_c = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = [f"state_dir={work}/mlruns", *args.overrides]
        prepare(config(base))  # the dataset cache is warm for every variant
        fit(config(base + ["trainer.epochs=1"]), Reporter())  # warm-up, untimed
        client = MlflowClient(f"sqlite:///{work}/mlruns/mlflow.db")
        hand = optuna.create_study(direction="maximize")
        cb = MLflowCallback(tracking_uri=f"sqlite:///{work}/hand.db", metric_name="val/balanced_acc")
        for block in range(2):  # A, then B/C, twice: whole blocks alternate over the machine's noise
            name = f"overhead{block}"  # fresh study, same seed: the same configurations each time
            t_cmd.append(sweep(work, *SWEEP, f"hydra.sweeper.study_name={name}",
                               f"hydra.sweeper.n_trials={args.trials}", *args.overrides))
            s = study(work, name)
            trials = sorted(s.trials, key=lambda t: t.number)
            t_loop.append(loop_seconds(s))
            train.append(sum(client.get_run(t.user_attrs["mlflow_run_id"]).data.metrics["fit_time_s"]
                             for t in trials))
            for i, tr in enumerate(trials):
                hand.enqueue_trial(tr.params)

                def direct(tr: optuna.trial.FrozenTrial = tr) -> None:
                    t = time.perf_counter()
                    fit(config(overrides(tr.params, base)), Reporter())
                    t_b.append(time.perf_counter() - t)

                def by_hand() -> None:
                    t = time.perf_counter()
                    hand.optimize(lambda trial: float(fit(config(overrides(trial.params, base)),
                                                          Reporter()).objective), n_trials=1, callbacks=[cb])
                    t_c.append(time.perf_counter() - t)

                for run in ((direct, by_hand) if i % 2 == 0 else (by_hand, direct)):
                    run()
            print(f"block {block + 1}/2 done", file=sys.stderr, flush=True)

    n = 2 * args.trials
    a, b, c = sum(t_loop), sum(t_b), sum(t_c)
    print(f"machine: {machine()}")
    print(f"2 x {args.trials} trials of `imbsweep sweep {' '.join(SWEEP)}` {' '.join(args.overrides)}")
    print(f"A platform sweep loop       : {a / n:.3f} s/trial (blocks {t_loop[0]:.1f} s, {t_loop[1]:.1f} s); "
          f"command start-up + wrap-up once per sweep: {statistics.mean(t_cmd) - statistics.mean(t_loop):.1f} s")
    print(f"B fit() directly            : {b / n:.3f} s/trial (median {statistics.median(t_b):.3f})")
    print(f"C optimize + MLflowCallback : {c / n:.3f} s/trial (median {statistics.median(t_c):.3f})")
    print(f"A vs B {a / b - 1:+.1%}   A vs C {a / c - 1:+.1%}   C vs B {c / b - 1:+.1%}")
    print(f"inside A: training epochs (fit_time_s) {sum(train) / n:.3f} s/trial, everything else "
          f"{(a - sum(train)) / n:.3f} s/trial")

if __name__ == "__main__":
    main()
