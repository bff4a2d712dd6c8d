"""The worker processes a sweep starts on this machine (``hydra.sweeper.n_jobs``): each runs
the same command as a plain worker against the same storage; the sweep reaps, joins or
stops them. How they share the budget is ``_workers``'."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..names import THREADS_ENV, WORKER_ENV

log = logging.getLogger(__name__)
#: the file descriptor a worker writes to once it is in its loop (:func:`worker_ready`)
READY_ENV = "IMBSWEEP_WORKER_READY"
_READY: dict[int, int] = {}  # worker pid -> the read end of its pipe
#: the user's own HYDRA_FULL_ERROR (the CLI sets it to 1 for itself, to print Hydra's errors as one line)
USER_FULL_ERROR = "IMBSWEEP_USER_FULL_ERROR"
GPU_ENV = "CUDA_VISIBLE_DEVICES"


#: the command line's settings each worker gets its own value of
_PER_WORKER = ("hydra.sweeper.n_jobs=", "hydra.sweep.dir=", "hydra.sweep.subdir=")


def worker_command(program: list[str], argv: list[str], k: int, sweep_dir: Path) -> list[str]:
    """Worker ``k``'s command: the sweep's own (its program, flags and overrides) as one worker
    (``n_jobs=1``) writing its jobs' folders under the sweep's (``w<k>_<job number>``)."""
    kept = [a for a in argv if not a.lstrip("+").startswith(_PER_WORKER)]
    return [*program, *kept, "hydra.sweeper.n_jobs=1", f"hydra.sweep.dir={sweep_dir}",
            f"hydra.sweep.subdir=w{k}_${{hydra.job.num}}"]


def visible_gpus(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The GPUs this process may hand out: the entries of ``CUDA_VISIBLE_DEVICES`` when it is
    set (empty, or starting with ``-1``: none), else the NVIDIA driver's devices (``0``, ``1``,
    …; read from ``/proc``, without importing torch or CUDA)."""
    given = environ.get(GPU_ENV)
    if given is not None:
        ids = [g.strip() for g in given.split(",") if g.strip()]
        return ids[:ids.index("-1")] if "-1" in ids else ids
    try:
        return [str(i) for i in range(len(list(Path("/proc/driver/nvidia/gpus").iterdir())))]
    except OSError:
        return []


def gpu_slots(n_jobs: int, gpus: Sequence[str]) -> list[str | None]:
    """The GPU of each of ``n_jobs`` workers (worker 0: this process): round-robin over
    ``gpus``, so that each has ``ceil(n_jobs / len(gpus))`` workers at most; None for all
    when there are none."""
    return [gpus[k % len(gpus)] if gpus else None for k in range(n_jobs)]


def workers_for_gpus(n_jobs: int, per_gpu: int | None, gpus: Sequence[str]) -> int:
    """``n_jobs``, lowered (with a warning) to ``len(gpus) * per_gpu`` when
    ``hydra.sweeper.workers_per_gpu`` limits how many trials share a GPU."""
    if per_gpu is None or not gpus or n_jobs <= len(gpus) * per_gpu:
        return n_jobs
    log.warning("hydra.sweeper.workers_per_gpu=%d on %d visible GPU(s): n_jobs %d lowered to %d",
                per_gpu, len(gpus), n_jobs, len(gpus) * per_gpu)
    return len(gpus) * per_gpu


def share_gpus(n_jobs: int, per_gpu: int | None, placed: bool) -> tuple[int, list[str | None]]:
    """``(n_jobs, the GPU of each worker)`` of a sweep's first process (:func:`workers_for_gpus`,
    :func:`gpu_slots`); none where GPUs are ``placed`` already (a started worker keeps the one it
    was given; a launcher that runs jobs elsewhere, such as submitit's, gives them theirs)."""
    if placed:
        return n_jobs, [None] * n_jobs
    gpus = visible_gpus()
    n_jobs = workers_for_gpus(n_jobs, per_gpu, gpus)
    return n_jobs, gpu_slots(n_jobs, gpus)


def pin_gpu(gpu: str | None) -> None:
    """This process's own share (worker 0): its jobs see only ``gpu`` (as ``cuda:0``). Set
    before its first trial; CUDA reads the variable when it first starts in the process."""
    if gpu is not None:
        os.environ[GPU_ENV] = gpu


def start_workers(program: list[str], argv: list[str], n_jobs: int, sweep_dir: Path,
                  threads: int | None, gpus: Sequence[str | None]) -> list[subprocess.Popen[bytes]]:
    """``n_jobs - 1`` more processes running this sweep's command (``program`` and ``argv``:
    ``_app.command``) as plain workers (imbsweep's app: ``threads`` torch threads each; worker
    ``k`` sees only GPU ``gpus[k]``, when not None: :func:`gpu_slots`)."""
    procs = []
    for k in range(1, n_jobs):
        read, write = os.pipe()  # the worker writes one byte once it is in its loop (worker_ready)
        os.set_blocking(read, False)
        env = {**os.environ, WORKER_ENV: str(k), THREADS_ENV: str(threads or ""), READY_ENV: str(write)}
        if os.environ.get(USER_FULL_ERROR) is not None:  # the user's setting, not the one the CLI made for itself
            env.pop("HYDRA_FULL_ERROR", None)
            if os.environ[USER_FULL_ERROR]:
                env["HYDRA_FULL_ERROR"] = os.environ[USER_FULL_ERROR]
        if gpus[k] is not None:
            env[GPU_ENV] = str(gpus[k])
        try:
            procs.append(subprocess.Popen(worker_command(program, argv, k, sweep_dir), env=env,
                                          stdout=subprocess.DEVNULL, pass_fds=(write,)))
        except BaseException:
            os.close(read)
            stop(procs)  # (the ones already started would go on claiming trials)
            raise
        finally:
            os.close(write)
        _READY[procs[-1].pid] = read
    log.info("started %d more worker process(es) running %s; torch threads per worker: %s%s", len(procs),
             " ".join(program), threads, f"; GPU per worker: {', '.join(map(str, gpus))}" if any(gpus) else "")
    return procs

def reap(workers: list[subprocess.Popen[bytes]]) -> None:
    """Collect workers that exited (a killed one would otherwise stay a zombie that looks
    alive to the liveness check); the next claim recovers their trials."""
    for w in workers:
        if w.returncode is None and w.poll() is not None:
            if w.returncode != 0:
                log.warning("worker pid %d exited with %s; its trial, if any, is re-queued", w.pid, w.returncode)
            _forget(w)

def join(workers: list[subprocess.Popen[bytes]]) -> None:
    """Wait for the workers to end their share of the budget."""
    for w in workers:
        if w.returncode is None and w.wait() != 0:  # (those reaped before were reported then)
            log.warning("worker pid %d exited with %s", w.pid, w.returncode)
        _forget(w)


def _forget(w: subprocess.Popen[bytes]) -> None:
    """Close the read end of an ended worker's pipe."""
    fd = _READY.pop(w.pid, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)

def worker_ready() -> None:
    """Tell the sweep that started this worker that it is in its loop: from now on a SIGINT
    stops its trial (re-queued) instead of landing in an import (a traceback, nothing to save)."""
    fd = os.environ.pop(READY_ENV, None)
    if fd is not None:
        with contextlib.suppress(OSError, ValueError):
            os.write(int(fd), b"1")
            os.close(int(fd))


def _ready(w: subprocess.Popen[bytes]) -> bool:
    """Whether worker ``w`` said it is in its loop (:func:`worker_ready`)."""
    fd = _READY.get(w.pid)
    if fd is None:
        return True
    with contextlib.suppress(OSError):
        if os.read(fd, 1):
            os.close(fd)
            _READY.pop(w.pid)
            return True
    return False


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    """Ctrl-C or an error: workers stop their trial (re-queued) and exit; a worker still
    starting (importing, opening the study: it holds no trial yet) is killed, which it
    survives without a word, where a SIGINT would print a traceback from inside an import."""
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGINT if _ready(w) else signal.SIGKILL)
    for w in workers:
        try:
            w.wait(timeout=60)
        except subprocess.TimeoutExpired:
            w.kill()
        _forget(w)


def torch_threads(n_jobs: int, config: Any) -> int | None:
    """Torch threads per trial so that ``n_jobs`` workers do not oversubscribe the cores
    (``trainer.num_threads`` set by the user wins)."""
    if os.environ.get(THREADS_ENV):
        return int(os.environ[THREADS_ENV])
    if n_jobs == 1 or OmegaConf.select(config, "trainer.num_threads") is not None:
        return None
    return max(1, (os.cpu_count() or 1) // n_jobs)
