"""The worker processes a sweep starts on this machine (``hydra.sweeper.n_jobs``): each runs
the same command as a plain worker against the same storage; the sweep reaps, joins or
stops them. How they share the budget is ``_workers``'."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

log = logging.getLogger(__name__)
WORKER_ENV, THREADS_ENV = "IMBSWEEP_WORKER", "IMBSWEEP_THREADS"  # set in the processes a sweep starts


def start_workers(config: Any, n_jobs: int, sweep_dir: Path, threads: int | None) -> list[subprocess.Popen[bytes]]:
    """``n_jobs - 1`` more processes running this sweep's command as plain workers (torch
    threads: ``threads`` each)."""
    task = list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
    hydra = [o for o in OmegaConf.select(config, "hydra.overrides.hydra", default=[]) or []
             if not o.startswith(("hydra.sweeper.n_jobs=", "hydra.sweep.dir=", "hydra.sweep.subdir="))]
    procs = []
    for k in range(1, n_jobs):
        cmd = [sys.executable, "-m", "imbsweep", "run", "-m", *task, *hydra, "hydra.sweeper.n_jobs=1",
               f"hydra.sweep.dir={sweep_dir}", f"hydra.sweep.subdir=w{k}_${{hydra.job.num}}"]
        env = {**os.environ, WORKER_ENV: str(k), THREADS_ENV: str(threads or "")}
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL))
    log.info("started %d more worker process(es); torch threads per worker: %s", len(procs), threads)
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
