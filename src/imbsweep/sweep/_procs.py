"""The worker processes a sweep starts on this machine (``hydra.sweeper.n_jobs``): each runs
the same command as a plain worker against the same storage; the sweep reaps, joins or
stops them. How they share the budget is ``_workers``'."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

log = logging.getLogger(__name__)
WORKER_ENV, THREADS_ENV = "IMBSWEEP_WORKER", "IMBSWEEP_THREADS"  # set in the processes a sweep starts


#: the command line's settings each worker gets its own value of
_PER_WORKER = ("hydra.sweeper.n_jobs=", "hydra.sweep.dir=", "hydra.sweep.subdir=")


def worker_command(program: list[str], argv: list[str], k: int, sweep_dir: Path) -> list[str]:
    """Worker ``k``'s command: the sweep's own (its program, flags and overrides) as one worker
    (``n_jobs=1``) writing its jobs' folders under the sweep's (``w<k>_<job number>``)."""
    kept = [a for a in argv if not a.lstrip("+").startswith(_PER_WORKER)]
    return [*program, *kept, "hydra.sweeper.n_jobs=1", f"hydra.sweep.dir={sweep_dir}",
            f"hydra.sweep.subdir=w{k}_${{hydra.job.num}}"]


def start_workers(program: list[str], argv: list[str], n_jobs: int, sweep_dir: Path,
                  threads: int | None) -> list[subprocess.Popen[bytes]]:
    """``n_jobs - 1`` more processes running this sweep's command (``program`` and ``argv``:
    ``_app.command``) as plain workers (imbsweep's app: ``threads`` torch threads each)."""
    procs = []
    for k in range(1, n_jobs):
        env = {**os.environ, WORKER_ENV: str(k), THREADS_ENV: str(threads or "")}
        procs.append(subprocess.Popen(worker_command(program, argv, k, sweep_dir), env=env,
                                      stdout=subprocess.DEVNULL))
    log.info("started %d more worker process(es) running %s; torch threads per worker: %s", len(procs),
             " ".join(program), threads)
    return procs

def reap(workers: list[subprocess.Popen[bytes]]) -> None:
    """Collect workers that exited (a killed one would otherwise stay a zombie that looks
    alive to the liveness check); the next claim recovers their trials."""
    for w in workers:
        if w.returncode is None and w.poll() is not None and w.returncode != 0:
            log.warning("worker pid %d exited with %s; its trial, if any, is re-queued", w.pid, w.returncode)

def join(workers: list[subprocess.Popen[bytes]]) -> None:
    """Wait for the workers to end their share of the budget."""
    for w in workers:
        if w.returncode is None and w.wait() != 0:  # (those reaped before were reported then)
            log.warning("worker pid %d exited with %s", w.pid, w.returncode)

def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    """Ctrl-C or an error: workers stop their trial (re-queued) and exit."""
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGINT)
    for w in workers:
        try:
            w.wait(timeout=60)
        except subprocess.TimeoutExpired:
            w.kill()


def torch_threads(n_jobs: int, config: Any) -> int | None:
    """Torch threads per trial so that ``n_jobs`` workers do not oversubscribe the cores
    (``trainer.num_threads`` set by the user wins)."""
    if os.environ.get(THREADS_ENV):
        return int(os.environ[THREADS_ENV])
    if n_jobs == 1 or OmegaConf.select(config, "trainer.num_threads") is not None:
        return None
    return max(1, (os.cpu_count() or 1) // n_jobs)
