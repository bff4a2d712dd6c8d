"""Sanity check of the training stack: ``cnn1d`` with default settings on *balanced*
MNIST-1D (``data.imbalance_ratio=1``). The MNIST-1D paper reports 94% test accuracy for its
CNN and 68% for an MLP; our bar is 88%.

    .venv/bin/python bench/mnist1d_balanced.py [--seeds 0 1 2] [hydra overrides...]
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
from imbsweep.training import fit, prepare  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    accs, times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        base = [f"state_dir={tmp}/mlruns", "data.imbalance_ratio=1", *args.overrides]
        t = time.perf_counter()
        setup = prepare(config(base))
        print(f"dataset: {len(setup.dataset.y_train)} train / {len(setup.dataset.y_test)} test,"
              f" generated in {time.perf_counter() - t:.1f} s", flush=True)
        for seed in args.seeds:
            cfg = config([*base, f"trainer.seed={seed}"])
            res = fit(cfg, Reporter())
            accs.append(res.metrics["test/acc"])
            times.append(res.metrics["fit_time_s"])
            print(f"seed {seed}: test/acc {accs[-1]:.4f}  best epoch {res.best_epoch}/"
                  f"{res.epochs_run}  fit {times[-1]:.1f} s", flush=True)
    print(f"machine: {machine()}")
    print(f"model {cfg.model._target_}, epochs {cfg.trainer.epochs}, batch {cfg.trainer.batch_size}"
          f", {cfg.optimizer._target_} lr {cfg.optimizer.lr}")
    print(f"test/acc mean {statistics.mean(accs):.4f} (min {min(accs):.4f}, max {max(accs):.4f})"
          f" over {len(accs)} seeds; fit time median {statistics.median(times):.1f} s")


if __name__ == "__main__":
    main()
