"""Tracking overhead: the same ``fit`` with a no-op reporter vs recorded in MLflow.

Both variants run in this one process, interleaved (A B A B ...), on a store that already
exists (its one-time schema migration is not what we measure), with the same config and
seed. The MLflow variant includes everything recording costs: creating the run, params,
per-epoch metrics, the final step, the artifacts (config, confusion-matrix PNG, per-class
CSV) and ending the run.

    .venv/bin/python bench/tracking_overhead.py [--repeats 5] [hydra overrides...]
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
from imbsweep.reporting import Reporter  # noqa: E402
from imbsweep.tracking import MlflowRun  # noqa: E402
from imbsweep.training import fit, prepare  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config([f"state_dir={tmp}/mlruns", "tracking.experiment=bench", *args.overrides])
        prepare(cfg)  # dataset generated and cached: not part of either variant

        def plain() -> float:
            t = time.perf_counter()
            fit(cfg, Reporter())
            return time.perf_counter() - t

        def recorded() -> float:
            t = time.perf_counter()
            with MlflowRun(cfg) as run:
                fit(cfg, run)
            return time.perf_counter() - t

        recorded()  # warm-up: creates the store (migrations) and imports mlflow/matplotlib
        plain()
        a, b = [], []
        for i in range(args.repeats):
            print(f"repeat {i + 1}/{args.repeats}", file=sys.stderr, flush=True)
            a.append(plain())
            b.append(recorded())
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"machine: {machine()}")
    print(f"config overrides: {' '.join(args.overrides) or '(defaults)'}; epochs "
          f"{cfg.trainer.epochs}, repeats {args.repeats}")
    print(f"no-op reporter : median {ma:.3f} s  (runs: {', '.join(f'{x:.3f}' for x in a)})")
    print(f"MLflow recorder: median {mb:.3f} s  (runs: {', '.join(f'{x:.3f}' for x in b)})")
    print(f"ratio recorded / plain (medians): {mb / ma:.3f}")


if __name__ == "__main__":
    main()
