"""``imbsweep``: the command line.

    imbsweep run [HYDRA_OVERRIDES...]   train once (``-m`` for a Hydra multirun)
    imbsweep sweep NAME [OVERRIDES...]  run the study sweeps/NAME.yaml (= run -m sweep=NAME)
    imbsweep ui [--port N] [--host H]   the stock MLflow UI on the local store
    imbsweep dashboard [--port N]       the stock optuna-dashboard on the local Optuna storage

Errors from bad input print one line (key, value, what is allowed) and exit non-zero;
``HYDRA_FULL_ERROR=1`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._config import redact

EXIT_INTERRUPTED = 130


def _say(msg: str) -> None:
    print(f"imbsweep: {msg}", file=sys.stderr)


class _DropLines:
    """A stderr proxy that drops lines starting with ``prefix`` (Hydra's "Error executing
    job with overrides" line, redundant next to our one-line error in a single run)."""

    def __init__(self, stream: Any, prefix: str) -> None:
        self._stream, self._prefix = stream, prefix

    def write(self, text: str) -> int:
        return len(text) if text.startswith(self._prefix) else self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def hydra_error_line(exc: BaseException) -> str:
    """Hydra's multi-line composition errors as one line."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(exc, OverrideParseException):
        hint = " ".join(ln.strip() for ln in exc.message.splitlines() if ln.strip())
        return f"cannot parse override {exc.override!r}: {hint}"
    if isinstance(exc, MissingConfigException) and exc.options is not None and exc.missing_cfg_file:
        group, _, option = exc.missing_cfg_file.rpartition("/")
        return f"{group}={option}: no such option; available: {', '.join(sorted(exc.options))}"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        lines.append(f"({str(cause).strip().splitlines()[0]})")
    return " ".join(lines[:3]) if lines else type(exc).__name__


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (``kill``, ``timeout``, a scheduler) ends a run like Ctrl-C: KILLED, not RUNNING."""
    raise KeyboardInterrupt


def run_hydra(argv: Sequence[str], prog: str = "imbsweep run") -> int:
    """Run the Hydra app with ``argv`` as its command line; return the exit code."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .errors import ImbsweepError

    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us; we print them as one line
    sys.argv = [prog, *argv]
    previous = signal.signal(signal.SIGTERM, _terminate)
    stderr = sys.stderr
    if not {"-m", "--multirun"} & set(argv):
        sys.stderr = _DropLines(stderr, "Error executing job with overrides")
    try:
        from . import app

        app.main()
    except ImbsweepError as exc:
        if full:
            raise
        _say(f"error: {exc}")
        return exc.exit_code
    except (HydraException, OmegaConfBaseException) as exc:
        if full:
            raise
        _say(f"error: {hydra_error_line(exc)}")
        return 2
    except KeyboardInterrupt:
        _say("interrupted; the MLflow run (if one started) is marked KILLED")
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # --help, --cfg and Hydra's own exits
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:  # noqa: BLE001 - a bug, still not a traceback wall
        if full:
            raise
        _say(f"error: {type(exc).__name__}: {exc} (set HYDRA_FULL_ERROR=1 for the traceback)")
        return 1
    finally:
        sys.stderr = stderr
        signal.signal(signal.SIGTERM, previous)
    return 0


def ui(args: argparse.Namespace) -> int:
    """Replace this process with ``mlflow ui`` on the local store (or ``--backend-store-uri``)."""
    from ._paths import local_tracking_uri, state_dir

    state = state_dir(args.state_dir)
    uri = args.backend_store_uri or os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri(state)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", args.host, "--port", str(args.port)]
    if uri.startswith("sqlite:///") and not args.backend_store_uri:
        state.mkdir(parents=True, exist_ok=True)
        cmd += ["--default-artifact-root", (state / "artifacts").as_uri()]
    print(f"MLflow UI on http://{args.host}:{args.port} (store {uri}); Ctrl-C stops it",
          flush=True)
    os.execv(sys.executable, cmd)
    return 0  # not reached


def dashboard(args: argparse.Namespace) -> int:
    """Replace this process with ``optuna-dashboard`` on the sweeps' storage."""
    from ._paths import state_dir

    storage = args.storage or str(state_dir(args.state_dir) / "optuna" / "journal.log")
    exe = shutil.which("optuna-dashboard", path=os.path.dirname(sys.executable)) or shutil.which("optuna-dashboard")
    if exe is None:
        _say("error: optuna-dashboard is not installed (pip install optuna-dashboard)")
        return 2
    cmd = [exe, storage, "--host", args.host, "--port", str(args.port)]
    if storage.endswith((".log", ".journal", ".jsonl")):
        if not Path(storage).exists():
            _say(f"error: --storage={storage!r}: no such journal file; run a sweep first "
                 "(imbsweep sweep smoke) or pass an Optuna storage URL")
            return 2
        cmd += ["--storage-class", "JournalFileStorage"]
    print(f"optuna-dashboard on http://{args.host}:{args.port} (storage {redact(storage)}); Ctrl-C stops it",
          flush=True)
    os.execv(exe, cmd)
    return 0  # not reached


def _server(p: argparse.ArgumentParser, port: int) -> argparse.ArgumentParser:
    """The options of the commands that start a local web server."""
    p.add_argument("--port", type=int, default=port)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--state-dir", default="mlruns", help="local state folder (default mlruns)")
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imbsweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"imbsweep {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser("run", help="train once (Hydra overrides follow; -m for multirun)",
                       add_help=False)
    r.add_argument("overrides", nargs=argparse.REMAINDER)
    sw = sub.add_parser("sweep", help="run a study: sweeps/NAME.yaml (Hydra overrides follow)")
    sw.add_argument("name", help="a file of sweeps/ without .yaml (smoke, lr_batch, tricks)")
    u = _server(sub.add_parser("ui", help="start the stock MLflow UI on the local store"), 5000)
    u.add_argument("--backend-store-uri", default=None,
                   help="another MLflow store (default: $MLFLOW_TRACKING_URI or the local one)")
    d = _server(sub.add_parser("dashboard", help="start the stock optuna-dashboard on the sweeps' storage"), 8080)
    d.add_argument("--storage", default=None,
                   help="an Optuna storage URL or journal file (default: the local journal)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:  # everything after `run` is Hydra's, options included
        return run_hydra(argv[1:])
    if argv[:1] == ["sweep"] and len(argv) > 1 and not argv[1].startswith("-"):
        return run_hydra(["-m", f"sweep={argv[1]}", *argv[2:]], prog=f"imbsweep sweep {argv[1]}")
    args = build_parser().parse_args(argv)
    return dashboard(args) if args.command == "dashboard" else ui(args)


if __name__ == "__main__":
    sys.exit(main())
