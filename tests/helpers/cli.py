"""The real command line in a subprocess, as a user types it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: small and fast: digits (bundled with scikit-learn), an MLP, 2 epochs
TINY = ("data=digits_lt", "model=mlp", "model.hidden_sizes=[32]", "trainer.epochs=2",
        "trainer.batch_size=64")
CLI = [sys.executable, "-m", "imbsweep"]


def cli_env() -> dict[str, str]:
    """The environment a CLI test runs with: no outside tracking store, no full Hydra errors."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    return env


def run_cli(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``imbsweep ARGS`` in ``cwd``, as a user would type it."""
    return subprocess.run([*CLI, *args], cwd=cwd, env=cli_env(), capture_output=True,
                          text=True, timeout=timeout)


def wait_until(proc: subprocess.Popen[str], ready: Callable[[], bool], timeout: float = 180) -> None:
    """Poll ``ready()`` while ``proc`` runs (it must not end first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        if ready():
            return
        time.sleep(0.3)
    raise AssertionError("the sweep never reached the expected state")


def served_json(cwd: Path, args: list[str], port: int, path: str, timeout: float = 60) -> Any:
    """Start ``imbsweep ARGS`` (a server on ``port``), return the JSON it serves at ``path``
    once it answers, and stop it (its whole process group)."""
    proc = subprocess.Popen([*CLI, *args], cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:  # noqa: S310
                    return json.loads(r.read())
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"nothing answered at http://127.0.0.1:{port}{path} within {timeout} s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
