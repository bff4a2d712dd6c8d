"""Processes a test starts and must not leave behind: CLI commands it interrupts, servers it
queries over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(proc: subprocess.Popen[str], ready: Callable[[], bool], timeout: float = 120,
               interval: float = 0.3) -> None:
    """Poll ``ready()`` until it holds; fail if ``proc`` exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if ready():
            return
        time.sleep(interval)
    raise AssertionError("the process never reached the expected state")


def interrupt_when(proc: subprocess.Popen[str], ready: Callable[[], bool], sig: int = signal.SIGINT,
                   timeout: float = 120, interval: float = 0.3) -> str:
    """Once ``ready()`` holds (see :func:`wait_until`), send ``sig`` to ``proc`` and return its
    stderr when it has ended (within 60 s). ``proc`` is killed however this ends, so a failing
    test leaves no process behind."""
    try:
        wait_until(proc, ready, timeout, interval)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return str(err)


def start_server(cmd: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None,
                 stdout: int = subprocess.PIPE, stderr: int = subprocess.STDOUT) -> subprocess.Popen[str]:
    """``cmd`` started in a session of its own, so that :func:`stop_server` ends it with every
    worker process it starts (``mlflow ui`` runs gunicorn or uvicorn workers)."""
    return subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=stdout, stderr=stderr, text=True,
                            start_new_session=True)


def stop_server(proc: subprocess.Popen[str]) -> str:
    """SIGTERM to the server's process group; its output (when piped) once it has exited."""
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return out or ""


def wait_for_http(url: str, proc: subprocess.Popen[str], timeout: float = 60, request_timeout: float = 5) -> bytes:
    """The body of ``url`` once the server ``proc`` answers it; fails if ``proc`` exits or
    ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            with urllib.request.urlopen(url, timeout=request_timeout) as r:  # noqa: S310 - loopback only
                return bytes(r.read())
        except OSError:
            assert time.monotonic() < deadline, f"nothing answered {url} within {timeout} s"
            time.sleep(0.5)
