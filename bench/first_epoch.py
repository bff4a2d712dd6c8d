"""Time from `imbsweep run` to the end of its first epoch.

The clock starts just before the process is started and stops at the first epoch's metric
timestamp in MLflow (``train/loss`` at step 1, taken when that epoch ended: the time to the
first epoch's start plus one epoch). The default run (MNIST-1D-LT, ``cnn1d``; 2 epochs, so that
each repetition is short) on a store and dataset cache that already exist. With ``--before
SRC`` the imbsweep of another checkout's ``src/`` runs too, interleaved with this one.

    .venv/bin/python bench/first_epoch.py [--repeats 5] [--before SRC] [hydra overrides...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # bench/ is scripts, not a package
from _common import machine  # noqa: E402


def first_epoch(work: Path, overrides: list[str], experiment: str, src: str | None) -> float:
    from mlflow import MlflowClient

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if src:
        env["PYTHONPATH"] = src
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "imbsweep", "run", "trainer.epochs=2", f"tracking.experiment={experiment}",
                    *overrides], cwd=work, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = MlflowClient(f"sqlite:///{work}/mlruns/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    (point,) = [m for m in client.get_metric_history(run.info.run_id, "train/loss") if m.step == 1]
    return point.timestamp / 1000 - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--before", metavar="SRC", help="also time the imbsweep in SRC (an older checkout's src/)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    variants = {"now": None, **({"before": args.before} if args.before else {})}
    times: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        first_epoch(work, args.overrides, "warmup", None)  # the store and the dataset cache exist
        for rep in range(args.repeats):
            order = list(variants) if rep % 2 == 0 else list(variants)[::-1]
            for name in order:
                times[name].append(first_epoch(work, args.overrides, f"{name}{rep}", variants[name]))
            print(f"repetition {rep + 1}/{args.repeats}: "
                  + "  ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), file=sys.stderr, flush=True)
    print(f"machine: {machine()}")
    print(f"`imbsweep run trainer.epochs=2 {' '.join(args.overrides)}`: to the end of the first epoch")
    print("| imbsweep | median | all |")
    print("| --- | --- | --- |")
    for name, ts in times.items():
        label = "this checkout" if name == "now" else args.before
        print(f"| {label} | {statistics.median(ts):.2f} s | {', '.join(f'{t:.2f}' for t in ts)} |")


if __name__ == "__main__":
    main()
