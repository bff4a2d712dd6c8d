"""What a process beside training costs it: ``fit`` of short trials alone, and beside a process
that keeps one core busy at normal priority, at nice 19 and at ``SCHED_IDLE`` (the MLflow writer
process imbsweep had until issue 27 ran at ``SCHED_IDLE`` for this reason).

With torch's intra-op threads on every core, a busy process on one core delays the thread there
at each parallel op, and the others wait for it. By default ``model=logreg trainer.epochs=3`` on
MNIST-1D-LT, 8 configurations (4 losses x 2 batch sizes), ``--repeats`` passes each.

    .venv/bin/python bench/fit_beside.py [--repeats 3] [hydra overrides...]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # bench/ is scripts, not a package
from _common import config, machine  # noqa: E402

HOG = "import os, sys\n{}\nwhile True: pass"
POLICIES = {
    "alone": None,
    "beside a busy process": "",
    "beside it at nice 19": "os.nice(19)",
    "beside it at SCHED_IDLE": "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    from imbsweep.reporting import Reporter
    from imbsweep.training import fit, prepare

    with tempfile.TemporaryDirectory() as tmp:
        base = [f"state_dir={tmp}/mlruns", *(args.overrides or ["model=logreg", "trainer.epochs=3"])]
        cfgs = [config([*base, f"loss={loss}", f"trainer.batch_size={bs}"])
                for loss, bs in itertools.product(("ce", "focal", "ldam", "balanced_softmax"), (64, 256))]
        fit(cfgs[0], Reporter())  # warm-up: the dataset cache, torch's first-call imports
        times: dict[str, list[float]] = {k: [] for k in POLICIES}
        for rep in range(args.repeats):
            for name, policy in POLICIES.items():
                hog = None if policy is None else subprocess.Popen([sys.executable, "-c", HOG.format(policy)])
                try:
                    time.sleep(0.2)
                    for cfg in cfgs:
                        setup = prepare(cfg)
                        t = time.perf_counter()
                        fit(cfg, Reporter(), setup)
                        times[name].append(time.perf_counter() - t)
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
            print(f"repetition {rep + 1}/{args.repeats}", file=sys.stderr, flush=True)
    print(f"machine: {machine()}")
    print("| `fit` of a short trial | median ms |")
    print("| --- | --- |")
    for name, ts in times.items():
        print(f"| {name} | {1000 * statistics.median(ts):.1f} |")


if __name__ == "__main__":
    main()
