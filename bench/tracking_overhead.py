"""Tracking overhead: the same ``fit`` with a no-op reporter vs recorded in MLflow.

Both variants run in this one process, interleaved (A B A B ...), on a store that already
exists (its one-time schema migration is not what we measure), with the same config and
seed. The MLflow variant includes everything recording costs: creating the run, params,
per-epoch metrics, the final step, the artifacts (config, confusion-matrix PNG, per-class
CSV) and ending the run.

The A/B difference is a few tens of ms on a run of ~2 s, so a neighbour on a shared machine
moves it by more than the target's 3%. The recording's cost is therefore also measured
alone, with far less noise: one ``fit``'s reporter calls are captured and replayed into
``MlflowRun`` (which does all its work synchronously, in the calling thread, so its cost
adds to the run and does not overlap training).

    .venv/bin/python bench/tracking_overhead.py [--repeats 5] [hydra overrides...]
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

        class Calls(Reporter):  # what fit tells a reporter, to replay into MlflowRun alone
            def __init__(self) -> None:
                self.calls: list[tuple[str, tuple[Any, ...]]] = []

            def on_fit_start(self, info: Any) -> None:
                self.calls.append(("on_fit_start", (info,)))

            def on_epoch_end(self, epoch: int, metrics: Any) -> None:
                self.calls.append(("on_epoch_end", (epoch, dict(metrics))))

            def on_fit_end(self, result: Any) -> None:
                self.calls.append(("on_fit_end", (result,)))

        def replay(calls: Calls) -> float:
            t = time.perf_counter()
            with MlflowRun(cfg) as run:
                for name, call_args in calls.calls:
                    getattr(run, name)(*call_args)
            return time.perf_counter() - t

        recorded()  # warm-up: creates the store (migrations) and imports mlflow/matplotlib
        plain()
        a, b = [], []
        for i in range(args.repeats):
            print(f"repeat {i + 1}/{args.repeats}", file=sys.stderr, flush=True)
            a.append(plain())
            b.append(recorded())
        calls = Calls()
        fit(cfg, calls)
        c = [replay(calls) for _ in range(3 * args.repeats)]
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"machine: {machine()}")
    print(f"config overrides: {' '.join(args.overrides) or '(defaults)'}; epochs "
          f"{cfg.trainer.epochs}, repeats {args.repeats}")
    print(f"no-op reporter : median {ma:.3f} s  (runs: {', '.join(f'{x:.3f}' for x in a)})")
    print(f"MLflow recorder: median {mb:.3f} s  (runs: {', '.join(f'{x:.3f}' for x in b)})")
    print(f"ratio recorded / plain (medians): {mb / ma:.3f}")
    pairs = sorted(y / x for x, y in zip(a, b, strict=True))  # each pair ran back to back
    print(f"ratio per back-to-back pair: median {statistics.median(pairs):.3f} "
          f"(all, sorted: {', '.join(f'{r:.3f}' for r in pairs)})")
    mc = statistics.median(c)
    print(f"recording alone (fit's reporter calls replayed into MlflowRun, {len(c)} times): "
          f"median {1000 * mc:.0f} ms, min {1000 * min(c):.0f} ms -> ratio "
          f"(no-op median + recording) / no-op median = {(ma + mc) / ma:.3f}")
    print(f"overhead per run: median {1000 * statistics.median(y - x for x, y in zip(a, b, strict=True)):.0f} ms")


if __name__ == "__main__":
    main()
