"""The science check: does each imbalance trick help on MNIST-1D-LT (ratio 100, ``cnn1d``)?

Each trick is tuned with the same budget (``--trials`` TPE trials on validation balanced
accuracy, seed 0, together with learning rate, batch size and the trick's own knobs), then
its best configuration is re-run with ``--seeds`` fresh training seeds; the table gives test
balanced accuracy mean ± 95% CI (Student t over seeds) and the difference to plain
cross-entropy with Welch's t-test. "ce + post-hoc" is plain CE's re-runs with the post-hoc
tau each run picks on its validation split (``test/balanced_acc_posthoc``): no retraining.

    .venv/bin/python bench/tricks_mnist1d.py [--trials 20] [--seeds 5] [--workers 2] [--epochs 40]

Trials call ``fit`` in-process (no MLflow) so that the time goes into training; the search
spaces use the sweeper's own expression parser.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # bench/ is scripts, not a package
from _common import config, machine  # noqa: E402

DRW = "choice(1, {drw})"  # weights from the start, or deferred to 3/4 of the epochs (as in the paper)
SHARED = {"optimizer.lr": "tag(log, interval(3e-4, 3e-2))", "trainer.batch_size": "choice(64, 128, 256)"}
SMOOTH = {"loss.label_smoothing": "choice(0.0, 0.05, 0.1, 0.2)"}
#: trick -> (fixed overrides, searched params, conditional params)
TRICKS: dict[str, tuple[list[str], dict[str, str], dict[str, Any]]] = {
    "ce": (["loss=ce"], {**SMOOTH}, {}),
    "ce + class weights (DRW searched)": (
        ["loss=ce"], {**SMOOTH, "loss.class_weights": "choice(inverse, sqrt_inverse, effective_number)",
                      "loss.reweight_from_epoch": DRW}, {}),
    "ce + resampling": (["loss=ce"], {**SMOOTH, "resampling": "choice(class_balanced, sqrt, progressive)"}, {}),
    "focal": (["loss=focal"], {"loss.gamma": "interval(0.5, 3.0)",
                               "loss.class_weights": "choice(none, inverse, sqrt_inverse)"}, {}),
    "class_balanced (focal)": (["loss=class_balanced"], {"loss.beta": "choice(0.9, 0.99, 0.999, 0.9999)",
                                                        "loss.gamma": "interval(0.5, 3.0)"}, {}),
    "ldam (DRW searched)": (
        ["loss=ldam"], {"loss.max_m": "interval(0.1, 0.8)", "loss.s": "choice(10.0, 30.0)",
                        "loss.class_weights": "choice(none, effective_number)"},
        {"loss.reweight_from_epoch": {"when": {"loss.class_weights": "effective_number"}, "space": "choice({drw})"}}),
    "logit_adjusted": (["loss=logit_adjusted"], {**SMOOTH, "loss.tau": "interval(0.5, 2.0)"}, {}),
    "balanced_softmax": (["loss=balanced_softmax"], {**SMOOTH}, {}),
}
METRICS = ("test/balanced_acc", "test/acc_few", "test/balanced_acc_posthoc", "val/balanced_acc")


def _overrides(space: Any, values: dict[str, Any]) -> list[str]:
    return space.overrides(values)


def tune(job: tuple[str, list[str], int, int]) -> dict[str, Any]:
    """One trick's study: ``trials`` TPE trials on ``val/balanced_acc``; returns its best."""
    import optuna
    import torch

    from imbsweep.sweep._space import SearchSpace
    from imbsweep.training import fit

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trick, base, trials, epochs = job
    fixed, params, conditional = TRICKS[trick]
    drw = max(1, 3 * epochs // 4)
    params = {k: v.format(drw=drw) for k, v in params.items()}
    conditional = {k: {**v, "space": v["space"].format(drw=drw)} for k, v in conditional.items()}
    space = SearchSpace.build({**SHARED, **params}, conditional)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=0, multivariate=True, group=True))
    t0 = time.perf_counter()
    for _ in range(trials):
        trial = study.ask()
        values = space.sample(trial)
        res = fit(config([*base, *fixed, *_overrides(space, values)]))
        study.tell(trial, res.objective if res.state == "complete" else None,
                   state=None if res.state == "complete" else optuna.trial.TrialState.FAIL)
    best = study.best_trial
    print(f"  tuned {trick}: best val/balanced_acc {best.value:.4f} after {trials} trials "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return {"trick": trick, "best_val": best.value,
            "overrides": [*fixed, *_overrides(space, best.params)]}


def reseed(job: tuple[str, list[str], list[str], int]) -> tuple[str, int, dict[str, float]]:
    import torch

    from imbsweep.training import fit

    torch.set_num_threads(1)
    trick, base, overrides, seed = job
    res = fit(config([*base, *overrides, f"trainer.seed={seed}"]))
    return trick, seed, {k: res.metrics.get(k, float("nan")) for k in METRICS}


def ci95(xs: list[float]) -> tuple[float, float]:
    from scipy import stats

    m = statistics.mean(xs)
    if len(xs) < 2:
        return m, float("nan")
    return m, float(stats.t.ppf(0.975, len(xs) - 1) * statistics.stdev(xs) / len(xs) ** 0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--out", type=Path, default=None, help="also write the raw results as JSON")
    args = ap.parse_args()
    from scipy import stats

    from imbsweep.training import prepare

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        base = [f"state_dir={tmp}/mlruns", f"trainer.epochs={args.epochs}"]
        ds = prepare(config(base)).dataset  # generate and cache once, before the workers
        print(f"MNIST-1D-LT: train counts {ds.train_class_counts.tolist()}, "
              f"{len(ds.y_val)} val / {len(ds.y_test)} test (balanced)", flush=True)
        ctx = mp.get_context("spawn")
        with ctx.Pool(args.workers) as pool:
            print(f"tuning {len(TRICKS)} tricks, {args.trials} trials each ...", flush=True)
            best = pool.map(tune, [(t, base, args.trials, args.epochs) for t in TRICKS], chunksize=1)
            seeds = list(range(1, args.seeds + 1))  # fresh: tuning used seed 0
            print(f"re-running each best configuration with seeds {seeds} ...", flush=True)
            runs = pool.map(reseed, [(b["trick"], base, b["overrides"], s) for b in best for s in seeds],
                            chunksize=1)
    by: dict[str, list[dict[str, float]]] = {}
    for trick, _seed, m in runs:
        by.setdefault(trick, []).append(m)
    rows = [(t, [m["test/balanced_acc"] for m in by[t]], [m["test/acc_few"] for m in by[t]]) for t in TRICKS]
    rows.append(("ce + post-hoc (tau picked on val)", [m["test/balanced_acc_posthoc"] for m in by["ce"]],
                 [float("nan")] * len(by["ce"])))
    ce = rows[0][1]
    print(f"\nmachine: {machine()}; {args.epochs} epochs, {args.trials} trials per trick, "
          f"{args.seeds} seeds; {time.perf_counter() - t0:.0f} s in all\n")
    print("| trick | test balanced acc (mean ± 95% CI) | few-shot acc | Δ vs ce | Welch p | best config |")
    print("| --- | --- | --- | --- | --- | --- |")
    cfg_of = {b["trick"]: b["overrides"] for b in best}
    cfg_of["ce + post-hoc (tau picked on val)"] = cfg_of["ce"]
    for trick, bal, few in sorted(rows, key=lambda r: -statistics.mean(r[1])):
        m, h = ci95(bal)
        fm = statistics.mean(few) if not any(f != f for f in few) else float("nan")
        d = m - statistics.mean(ce)
        p = float(stats.ttest_ind(bal, ce, equal_var=False).pvalue) if trick != "ce" else float("nan")
        cfg = " ".join(o for o in cfg_of[trick] if not o.startswith("loss=ce"))
        print(f"| {trick} | {100 * m:.1f} ± {100 * h:.1f} | {'' if fm != fm else f'{100 * fm:.1f}'} | "
              f"{'' if trick == 'ce' else f'{100 * d:+.1f}'} | {'' if p != p else f'{p:.3g}'} | `{cfg}` |")
    if args.out:
        args.out.write_text(json.dumps({"best": best, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
