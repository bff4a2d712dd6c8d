"""Where the wall of a short `imbsweep run` goes, outside `fit`.

One process of `imbsweep run` (the default MNIST-1D-LT `cnn1d` run, 1 epoch, on a store and a
dataset cache that already exist, or ``--fresh``: a new folder each time), under
``python -X importtime``; the phases from its own clocks:

- **imports**: each top-level package's own import time (``-X importtime``: what its modules
  took, not those of other packages they import);
- **to the run's start**: from the process's start to the MLflow run's ``start_time``;
- **fit**: from the run's start to the last epoch's ``train/loss`` timestamp;
- **after the last epoch**: to the run's ``end_time`` (test metrics, post-hoc scans, artifacts);
- **exit**: from the run's end to the process's exit.

    .venv/bin/python bench/run_wall.py [--repeats 3] [--fresh] [--before SRC] [hydra overrides...]

``-X importtime`` adds a little to each import: the phases are measured in the same process, the
wall total is the median of runs without it (``--repeats``).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # bench/ is scripts, not a package
from _common import machine  # noqa: E402


def _run(work: Path, overrides: list[str], experiment: str, src: str | None, importtime: bool) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if src:
        env["PYTHONPATH"] = src
    flags = ["-X", "importtime"] if importtime else []
    t0 = time.time()
    p = subprocess.run([sys.executable, *flags, "-m", "imbsweep", "run", "trainer.epochs=1",
                        f"tracking.experiment={experiment}", *overrides], cwd=work, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return t0, p.stderr if importtime else ""


def _imports(text: str) -> dict[str, float]:
    """Seconds of import per package: each module's own time (``-X importtime``'s "self")
    counted under its top-level package; and ``torch._dynamo (all it imports)``, the cumulative
    time of that one import (``torch.optim`` makes it when the first optimizer is built)."""
    out: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if m:
            out[m[3].split(".")[0]] += int(m[1]) / 1e6
            if m[3] == "torch._dynamo":
                out["torch._dynamo (all it imports)"] += int(m[2]) / 1e6
    return dict(out)


def _phases(work: Path, experiment: str, t0: float, t_exit: float) -> dict[str, float]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{work}/mlruns/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    last = max(m.timestamp for m in client.get_metric_history(run.info.run_id, "train/loss")) / 1000
    start, end = run.info.start_time / 1000, run.info.end_time / 1000
    return {"to the run's start": start - t0, "fit": last - start, "after the last epoch": end - last,
            "exit": t_exit - end}


def measure(src: str | None, overrides: list[str], repeats: int, fresh: bool, base: Path) -> dict[str, object]:
    walls: list[float] = []
    phases: dict[str, list[float]] = defaultdict(list)
    imports: dict[str, list[float]] = defaultdict(list)
    for rep in range(repeats):
        for importtime in (False, True):
            experiment = f"e{rep}{int(importtime)}{src is not None}"
            work = base / experiment if fresh else base  # (fresh: a new folder for each run)
            work.mkdir(exist_ok=True)
            t0, text = _run(work, overrides, experiment, src, importtime)
            t1 = time.time()
            if not importtime:
                walls.append(t1 - t0)
                continue
            for k, v in _phases(work, experiment, t0, t1).items():
                phases[k].append(v)
            for k, v in _imports(text).items():
                imports[k].append(v)
    return {"wall": walls, "phases": phases, "imports": imports}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fresh", action="store_true", help="a new folder (store, dataset cache) for every run")
    ap.add_argument("--before", metavar="SRC", help="also measure the imbsweep in SRC (an older checkout's src/)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    variants = {"this checkout": None, **({args.before: args.before} if args.before else {})}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        if not args.fresh:
            _run(base, args.overrides, "warmup", None, False)  # the store and the dataset cache exist
        results = {name: measure(src, args.overrides, args.repeats, args.fresh, base)
                   for name, src in variants.items()}
    med = statistics.median
    print(f"machine: {machine()}")
    print(f"`imbsweep run trainer.epochs=1 {' '.join(args.overrides)}`, {'fresh' if args.fresh else 'warm'} store, "
          f"median of {args.repeats}")
    for name, r in results.items():
        walls = r["wall"]
        assert isinstance(walls, list)
        print(f"\n{name}: wall {med(walls):.2f} s ({', '.join(f'{w:.2f}' for w in walls)})")
        print("| phase (under -X importtime) | median |")
        print("| --- | --- |")
        for k, v in r["phases"].items():  # type: ignore[attr-defined]
            print(f"| {k} | {med(v):.2f} s |")
        print("| imports, by package | median |")
        print("| --- | --- |")
        shown = sorted(r["imports"].items(), key=lambda kv: -med(kv[1]))  # type: ignore[attr-defined]
        for k, v in shown[:12]:
            print(f"| {k} | {med(v):.2f} s |")
        rest = [med(v) for k, v in shown[12:]]
        print(f"| {len(rest)} other packages | {sum(rest):.2f} s |")
        total = sum(med(v) for k, v in shown if "(" not in k)
        print(f"| all imports | {total:.2f} s |")


if __name__ == "__main__":
    main()
