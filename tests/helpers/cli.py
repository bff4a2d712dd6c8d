"""The real command line, run as a user would: ``python -m imbsweep ...`` in a subprocess."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "imbsweep"]
OPTUNA = str(Path(sys.executable).with_name("optuna"))  # the stock optuna CLI of this environment


def cli_env() -> dict[str, str]:
    """The environment of a CLI subprocess: this one's, without the variables that would send
    it to another store or change its error output."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    return env


def run_cli(cwd: Path, *args: str, timeout: float = 300, pythonpath: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``imbsweep ARGS`` in ``cwd``, as a user would type it (``pythonpath``: where the user's own
    modules are, put on ``PYTHONPATH``; ``env``: the whole environment, ``cli_env()`` by default)."""
    env = dict(cli_env() if env is None else env)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath), env.get("PYTHONPATH")) if p)
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def popen_cli(cwd: Path, *args: str, stdout: int = subprocess.DEVNULL,
              env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``imbsweep ARGS`` started in ``cwd`` and left running, its stderr piped (``stdout``: where
    its stdout goes); the caller ends it (see :func:`tests.helpers.procs.interrupt_when`)."""
    return subprocess.Popen([*CLI, *args], cwd=cwd, env=cli_env() if env is None else env, stdout=stdout,
                            stderr=subprocess.PIPE, text=True)


def csv_by_arm(text: str) -> dict[str, dict[str, str]]:
    """The rows of ``imbsweep compare --format csv``, by arm."""
    return {r["arm"]: r for r in csv.DictReader(io.StringIO(text))}
