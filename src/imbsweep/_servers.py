"""``imbsweep ui`` and ``imbsweep dashboard``: the stock MLflow UI and optuna-dashboard on a
study's stores, each checked first (a port in use, a store that does not answer, an Optuna
storage that cannot be read: one line and exit 2, instead of a server that starts and
fails)."""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import sys
from pathlib import Path

from ._paths import journal_path, state_dir
from ._stores import redact
from .errors import say
from .names import ARTIFACTS, JOURNAL_SUFFIXES, MLFLOW_DB


def _port_error(args: argparse.Namespace) -> str | None:
    """The one-line error when the server could not listen on ``--host:--port`` (None: it
    can). Checked before the server starts: ``mlflow ui`` logs a bind error and exits 0."""
    import socket

    if not 1 <= args.port <= 65535:
        return f"error: --port={args.port}: must be a TCP port, 1..65535"
    try:
        socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:  # the name does not resolve: --host is wrong, not the port
        return (f"error: --host={args.host!r}: no such host here ({getattr(exc, 'strerror', None) or exc}); "
                "pass another --host (127.0.0.1: this machine only)")
    try:
        with socket.create_server((args.host, args.port)):
            return None
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno == errno.EADDRNOTAVAIL:  # an address of another machine
            return f"error: --host={args.host!r}: cannot listen there ({why}); pass an address of this machine"
        return f"error: --port={args.port}: cannot listen on {args.host}:{args.port} ({why}); pass another --port"


def _ui_store_error(uri: str, key: str, timeout: float | None = None) -> str | None:
    """Why ``mlflow ui`` could not serve the store ``uri`` (None: it can): it reads a database
    (a tracking server serves its own UI), whose driver must be installed and whose server,
    or folder, must be there."""
    from urllib.parse import urlsplit

    from ._stores import CONNECT_TIMEOUT_S, check_timeout, check_tracking_uri
    from .errors import ConfigError

    scheme = urlsplit(uri).scheme.lower().partition("+")[0]
    if scheme in ("http", "https"):
        return (f"error: {key}={redact(uri)!r}: a tracking server serves its own UI: open {redact(uri)} in a "
                "browser (imbsweep ui serves a database: sqlite:///…, postgresql://…)")
    try:
        seconds = CONNECT_TIMEOUT_S if timeout is None else check_timeout("--connect-timeout", timeout)
        check_tracking_uri(uri, key, seconds, "--connect-timeout")
    except ConfigError as exc:
        return f"error: {exc}"
    if scheme not in ("sqlite", "postgresql", "mysql", "mssql"):
        return f"error: {key}={redact(uri)!r}: imbsweep ui serves a database (sqlite:///…, postgresql://…)"
    return None


def ui(args: argparse.Namespace) -> int:
    """Replace this process with ``mlflow ui`` on the local store (or ``--backend-store-uri``)."""
    from ._paths import local_tracking_uri
    from ._stores import sqlalchemy_url

    state = state_dir(args.state_dir)
    key = "--backend-store-uri" if args.backend_store_uri else "MLFLOW_TRACKING_URI"
    uri = args.backend_store_uri or os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri(state)
    if args.workers < 1:
        say(f"error: --workers={args.workers}: must be an integer >= 1")
        return 2
    port_error = _port_error(args)
    if port_error:
        say(port_error)
        return 2
    local = uri == local_tracking_uri(state)
    if local and state.exists() and not state.is_dir():
        say(f"error: --state-dir={args.state_dir!r}: must be a folder, and it is a file")
        return 2
    if local and not (state / MLFLOW_DB).exists():  # mlflow ui makes an empty store there: it must be writable
        from ._stores import check_folder
        from .errors import ConfigError

        try:
            check_folder("--state-dir", state, shown=args.state_dir, create=False)
        except ConfigError as exc:
            say(f"error: {exc}; imbsweep ui makes an empty MLflow store there (none yet): run it where a sweep "
                "ran, or pass --state-dir or --backend-store-uri")
            return 2
    store_error = None if local else _ui_store_error(uri, key, args.connect_timeout)
    if store_error:
        say(store_error)
        return 2
    from ._client import ui_link

    base = f"http://{args.host}:{args.port}"
    link = ui_link(base, "experiments")
    if args.study:  # the link that opens the study's experiment on its runs
        from .results import known_studies, tracking_client

        _, client = tracking_client(uri, state, args.connect_timeout)
        exp = client.get_experiment_by_name(args.study)
        if exp is None:
            say(f"error: --study={args.study!r}: not in the MLflow store {redact(uri)}; known studies: "
                 f"{', '.join(known_studies(client)) or 'none yet'}")
            return 2
        link = ui_link(base, f"experiments/{exp.experiment_id}")
    # one server worker: a local UI for one person starts several times faster than with four
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", sqlalchemy_url(uri),
           "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]
    if uri.startswith("sqlite:///") and not args.backend_store_uri:
        state.mkdir(parents=True, exist_ok=True)
        cmd += ["--default-artifact-root", (state / ARTIFACTS).as_uri()]
    print(f"MLflow UI: open {link}  (store {redact(uri)}; Ctrl-C stops it)", flush=True)
    # MLflow's job runner (huey consumers for its GenAI scorers: 7 processes, ~2 GB) serves
    # nothing a sweep records; $MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true turns it back on
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(sys.executable, cmd)
    return 0  # not reached


def _journal_error(path: Path) -> str | None:
    """A journal whose records optuna-dashboard could not read (it would print a traceback): the
    first whole line that is not one JSON record, as the sweep says it (a torn last line, which
    the next sweep moves aside, is left to optuna-dashboard, which skips it)."""
    import json

    try:
        with open(path, "rb") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.endswith(b"\n"):
                    break
                try:
                    json.loads(line)
                except ValueError as exc:
                    return (f"error: --storage={str(path)!r}: the Optuna journal is damaged at line {n} "
                            f"({' '.join(str(exc).split())[:200]}); its first {n - 1} records are intact: "
                            f"`head -n {n - 1} {path} > fixed.log`, then --storage fixed.log")
    except OSError as exc:
        return f"error: --storage={str(path)!r}: cannot be read ({exc.strerror or exc})"
    return None


def _storage_error(storage: str, timeout_s: float = 5.0) -> str | None:
    """Why optuna-dashboard could not open ``--storage`` (None: it can): a journal file that
    exists, or a database URL whose driver is installed and whose database answers."""
    from ._stores import connect_failure, driver_error, sqlalchemy_url

    shown = redact(storage)
    if storage.endswith(JOURNAL_SUFFIXES) and "://" not in storage:
        path = Path(storage)
        if path.is_dir():
            return f"error: --storage={storage!r}: is a folder; name the journal file in it (optuna/journal.log)"
        if not path.exists():
            return (f"error: --storage={storage!r}: no such journal file; run a sweep first "
                    "(imbsweep sweep smoke) or pass an Optuna storage URL")
        return _journal_error(path)
    if "://" not in storage:
        return (f"error: --storage={shown!r}: neither an Optuna storage URL (postgresql://…, sqlite:///…) nor a "
                f"journal file ({', '.join('…' + s for s in JOURNAL_SUFFIXES)})")
    url = sqlalchemy_url(storage)
    missing = driver_error(url)
    if missing:
        return f"error: --storage={shown!r}: {missing}"
    if url.startswith("sqlite:///"):
        db = url[len("sqlite:///"):]
        return None if Path(db).is_file() else (f"error: --storage={shown!r}: no such database file {db}; run a "
                                                "sweep on it first")
    exc = connect_failure(url, timeout_s)
    if exc is not None:
        why = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return f"error: --storage={shown!r}: cannot connect ({why[0] if why else type(exc).__name__})"
    return None


def dashboard(args: argparse.Namespace) -> int:
    """Replace this process with ``optuna-dashboard`` on the sweeps' storage."""
    from ._stores import sqlalchemy_url

    storage = args.storage or str(journal_path(state_dir(args.state_dir)))
    exe = shutil.which("optuna-dashboard", path=os.path.dirname(sys.executable)) or shutil.which("optuna-dashboard")
    if exe is None:
        say("error: optuna-dashboard is not installed (pip install optuna-dashboard)")
        return 2
    port_error = _port_error(args)
    if port_error:
        say(port_error)
        return 2
    storage_error = _storage_error(storage)
    if storage_error:
        say(storage_error)
        return 2
    journal = storage.endswith((".log", ".journal", ".jsonl")) and "://" not in storage
    cmd = [exe, storage if journal else sqlalchemy_url(storage), "--host", args.host, "--port", str(args.port)]
    if journal:
        cmd += ["--storage-class", "JournalFileStorage"]
    print(f"optuna-dashboard on http://{args.host}:{args.port} (storage {redact(storage)}); Ctrl-C stops it",
          flush=True)
    os.execv(exe, cmd)
    return 0  # not reached
