"""Coordination: what a sweep costs per trial, and how that scales with workers.

The app (``bench/sleep_app``) is a plain Hydra app whose trials only wait (``sleep`` seconds,
no CPU), swept by imbsweep's sweeper with 1, 4, 8 and 16 workers (``hydra.sweeper.n_jobs``).
Ideal throughput is workers / sleep trials per second; the steady state is measured on the
trials' own start and end times in the Optuna study, while every worker is at work (from the
end of the last worker's first trial to the start of the first worker's last one): start-up
and drain are left out. The CPU time of the whole process tree per trial (start-up included)
says what each trial costs the machine beside its wait.

    .venv/bin/python bench/coordination.py [--sleep 2] [--workers 1 4 8 16] [--rounds 12]
        [--src OTHER_CHECKOUT/src] [hydra overrides...]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from imbsweep.names import ATTR_PID

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402
from _sweeps import study as local_study  # noqa: E402

APP = Path(__file__).parent / "sleep_app" / "app.py"


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(workdir: Path, name: str, workers: int, trials: int, sleep: float, overrides: list[str],
        src: str | None) -> tuple[float, float]:
    """The sweep in ``workdir``; returns (wall seconds, CPU seconds of the process tree)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if src:
        env["PYTHONPATH"] = src
    cmd = [sys.executable, str(APP), "-m", f"hydra.sweeper.n_jobs={workers}", f"hydra.sweeper.n_trials={trials}",
           f"hydra.sweeper.study_name={name}", f"sleep={sleep}", f"hydra.sweep.dir={workdir}/multirun",
           *overrides]
    cpu, t = children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall, cpu = time.perf_counter() - t, children_cpu() - cpu
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return wall, cpu


def steady_rate(study: optuna.Study) -> tuple[float, int]:
    """Trials per second while every worker is at work: from the end of the last worker's first
    trial to the start of the first worker's last one, (trials that started and ended in that
    window) / window. A trial's worker is its process (the pid the sweep records on it)."""
    trials = [t for t in study.trials if t.datetime_start and t.datetime_complete
              and t.state == optuna.trial.TrialState.COMPLETE]
    by_pid: dict[int, list[optuna.trial.FrozenTrial]] = {}
    for t in trials:
        by_pid.setdefault(int(t.user_attrs[ATTR_PID]), []).append(t)
    lo = max(min(t.datetime_complete for t in ts) for ts in by_pid.values())  # type: ignore[type-var]
    hi = min(max(t.datetime_start for t in ts) for ts in by_pid.values())  # type: ignore[type-var]
    inside = [t for t in trials if lo <= t.datetime_start and t.datetime_complete <= hi]  # type: ignore[operator]
    seconds = (hi - lo).total_seconds()
    return (len(inside) / seconds if seconds > 0 and inside else float("nan")), len(inside)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sleep", type=float, default=2.0, help="seconds each trial waits")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--rounds", type=int, default=12, help="trials per worker")
    ap.add_argument("--src", help="run the sweeper of another checkout's src/ (before/after)")
    ap.add_argument("overrides", nargs="*", help="more hydra overrides (an RDB storage URL, tracking_uri, ...)")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"machine: {machine()}")
    print(f"trial: sleeps {args.sleep:g} s; {args.rounds} trials per worker; src: {args.src or 'this checkout'}")
    print(f"{'workers':>7} {'trials':>6} {'wall s':>7} {'CPU s/trial':>11} {'steady trials/s':>15} "
          f"{'ideal':>6} {'of ideal':>8}")
    for n in args.workers:
        trials = n * args.rounds
        with tempfile.TemporaryDirectory() as tmp:
            name = f"sleep{n}_{os.getpid()}"
            wall, cpu = run(Path(tmp), name, n, trials, args.sleep, args.overrides, args.src)
            url = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("hydra.sweeper.storage=")), None)
            study = optuna.load_study(study_name=name, storage=url) if url else local_study(Path(tmp), name)
            finished = sum(t.state.is_finished() for t in study.trials)
            assert finished == trials, f"{finished} finished trials, expected {trials}"
            rate, inside = steady_rate(study)
            ideal = n / args.sleep
            print(f"{n:>7} {trials:>6} {wall:>7.1f} {cpu / trials:>11.3f} {rate:>11.2f} ({inside:>2}) "
                  f"{ideal:>6.2f} {rate / ideal:>7.0%}", flush=True)
    print(f"command: {sys.executable} {APP} -m hydra.sweeper.n_jobs=N hydra.sweeper.n_trials=N*{args.rounds} "
          f"sleep={args.sleep:g} {' '.join(args.overrides)}")


if __name__ == "__main__":
    main()
