"""The stores imbsweep talks to, checked before they are used: an MLflow tracking URI, an
SQLAlchemy database URL, a local folder. Each problem is one :class:`ConfigError` naming the
key (or command-line option) and the value, found in seconds instead of after a library's
own retries (MLflow retries a refused connection for about four minutes)."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError

#: seconds to wait for a tracking server to answer at start-up (``tracking.connect_timeout_s``,
#: ``--connect-timeout``); MLflow's own retries still cover a server lost mid-run
CONNECT_TIMEOUT_S = 8.0
#: the DBAPI module each SQLAlchemy dialect's bare form (``postgresql://``) needs, and the
#: driver imbsweep installs for it instead (``pyproject.toml``: psycopg2-binary)
_BARE_DRIVERS = {"postgresql": ("psycopg", "psycopg2"), "postgres": ("psycopg", "psycopg2"),
                 "mysql": ("MySQLdb", "pymysql"), "mariadb": ("MySQLdb", "pymysql")}
_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}
_REACHED: set[str] = set()  # tracking URIs this process found answering (checked once each)


_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<pw>[^@/\s]+)(?P<at>@)")


def redact(value: Any) -> Any:
    """Hide the password of ``scheme://user:password@host`` URLs inside a string."""
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\g<head>***\g<at>", value)
    return value


def sqlalchemy_url(url: str) -> str:
    """``url`` with a driver SQLAlchemy can load: the bare ``postgresql://`` (and
    ``postgres://``) form means psycopg 3 to SQLAlchemy 2.1, which imbsweep does not install,
    so it becomes ``postgresql+psycopg2://`` when psycopg 3 is missing and psycopg2 is there
    (``mysql://`` likewise becomes ``mysql+pymysql://`` when only PyMySQL is installed).
    Any other URL, and one that names its driver, is returned as it is.

    Example:
        >>> sqlalchemy_url("postgresql://bob@db:5432/optuna")  # doctest: +SKIP
        'postgresql+psycopg2://bob@db:5432/optuna'
    """
    scheme, sep, rest = url.partition("://")
    drivers = _BARE_DRIVERS.get(scheme.lower()) if sep else None
    if drivers is None:
        return url
    default, installed = drivers
    if _importable(default) or not _importable(installed):
        return url
    dialect = "postgresql" if scheme.lower() == "postgres" else scheme.lower()
    return f"{dialect}+{installed}://{rest}"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def driver_error(url: str) -> str | None:
    """What is missing to open the database ``url`` (None: its driver can be imported)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return "not a database URL (dialect+driver://user@host:port/database)"
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        return f"SQLAlchemy has no such dialect, {parsed.drivername}; a database URL is dialect+driver://…"
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        return (f"its database driver is not installed ({exc.name or exc}): install it, or name an installed "
                "one in the URL (dialect+driver://…, e.g. postgresql+psycopg2://)")
    return None


def _mlflow_schemes() -> set[str] | None:
    """The URI schemes MLflow can track to (its registry, plugins included); None if unknown."""
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry
    except ImportError:  # pragma: no cover - another MLflow layout: let MLflow decide
        return None
    registry = getattr(_tracking_store_registry, "_registry", None)
    return {str(s) for s in registry} if isinstance(registry, dict) else None


def check_tracking_uri(uri: str, key: str, timeout_s: float = CONNECT_TIMEOUT_S,
                       timeout_key: str = "tracking.connect_timeout_s") -> None:
    """Raise a :class:`ConfigError` naming ``key`` unless MLflow can use ``uri``: a scheme
    MLflow knows (a bare path is MLflow's deprecated file store), a database driver that is
    installed, and, for a server, one that answers within ``timeout_s`` seconds (a refused
    connection is retried until then). A server checked once answers for the whole process.

    Args:
        uri: the tracking URI.
        key: how the user set it (``tracking.uri``, ``--tracking-uri``, ``MLFLOW_TRACKING_URI``).
        timeout_s: how long to wait for a server.
        timeout_key: the setting that changes ``timeout_s``, named in the message.
    """
    if uri in _REACHED:
        return
    shown = redact(uri)
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if len(scheme) == 1:  # a Windows drive letter, c:\...: a path
        scheme = ""
    if scheme in ("", "file"):
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("1", "true"):
            return
        raise ConfigError(key, shown, "a path is MLflow's file store, which MLflow 3 no longer writes; use "
                          "sqlite:///<folder>/mlflow.db, a tracking server http(s)://host:port, or leave it "
                          "unset for the local store (MLFLOW_ALLOW_FILE_STORE=true forces the file store)")
    known = _mlflow_schemes()
    base = scheme.partition("+")[0]
    if known is not None and base not in known:
        raise ConfigError(key, shown, f"MLflow knows no {scheme}:// store; it takes "
                          + ", ".join(f"{s}://" for s in sorted(known - {"", "file"})))
    if base in ("sqlite", "postgresql", "mysql", "mssql"):
        missing = driver_error(sqlalchemy_url(uri))
        if missing:
            raise ConfigError(key, shown, missing)
        if base == "sqlite":
            db = uri.partition(":///")[2]
            if db and db != ":memory:":
                check_folder(key, Path(db).expanduser().parent, shown=shown)
            return
    if base in ("http", "https"):
        _wait_for_server(uri, key, shown, timeout_s, timeout_key)
    elif base in _DEFAULT_PORTS and parts.hostname:
        port = parts.port or _DEFAULT_PORTS[base]
        _wait_for_port(parts.hostname, port, key, shown, timeout_s, timeout_key, "database server")
        _connect_once(uri, key, shown, timeout_s)
    _REACHED.add(uri)


def connect_failure(url: str, timeout_s: float) -> Exception | None:
    """Why one connection (``SELECT 1``) to the database at the SQLAlchemy ``url`` fails, within
    ``timeout_s`` on PostgreSQL; None when it succeeds."""
    from sqlalchemy import create_engine, text

    connect_args = {"connect_timeout": max(1, int(timeout_s))} if url.startswith("postgresql") else {}
    try:
        engine = create_engine(url, connect_args=connect_args)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any reason it cannot connect is the user's to fix
        return exc
    return None


def _connect_once(uri: str, key: str, shown: str, timeout_s: float) -> None:
    """One connection to the database behind ``uri``, whose server answers: a database that
    does not exist, or a login it refuses, is one line now (MLflow would retry it for ~2
    minutes, a warning a try)."""
    from .errors import db_reason

    exc = connect_failure(sqlalchemy_url(uri), timeout_s)
    if exc is not None:
        raise ConfigError(key, shown, f"the database server answers, but this database cannot be used "
                                      f"({redact(db_reason(exc))})")


def check_timeout(key: str, value: object) -> float:
    """A positive, finite number of seconds (``tracking.connect_timeout_s``, ``--connect-timeout``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
        raise ConfigError(key, value, "must be a number of seconds > 0")
    return float(value)


def _wait_for_server(uri: str, key: str, shown: str, timeout_s: float, timeout_key: str) -> None:
    """Until ``timeout_s``: any HTTP answer from ``uri`` (an error status too: a server is there)."""
    url = uri.rstrip("/") + "/health"
    deadline = time.monotonic() + timeout_s
    tries, why = 0, ""
    while True:
        tries += 1
        left = deadline - time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=max(0.1, min(left, 5.0))):
                return
        except urllib.error.HTTPError:
            return  # it answered (401, 404, ...): MLflow's own calls take it from here
        except urllib.error.URLError as exc:
            reason = exc.reason
            if not isinstance(reason, OSError) or type(reason).__module__ == "ssl":
                return  # TLS and the like: MLflow has its own settings for those
            why = _why(reason)
        except (OSError, ValueError) as exc:  # a timeout while reading, a malformed URL
            if isinstance(exc, ValueError):
                raise ConfigError(key, shown, f"not a URL MLflow can call ({exc})") from None
            why = _why(exc)
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(1.0, left))  # a server that is starting: try again until the deadline
    raise ConfigError(key, shown, f"no MLflow tracking server answers there ({why}; {_tries(tries)} in "
                      f"{timeout_s:g} s); start it (mlflow server) or fix the URI{_longer(timeout_key)}")


def _wait_for_port(host: str, port: int, key: str, shown: str, timeout_s: float, timeout_key: str,
                   what: str) -> None:
    deadline = time.monotonic() + timeout_s
    tries, why = 0, ""
    while True:
        tries += 1
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(deadline - time.monotonic(), 5.0))):
                return
        except OSError as exc:
            why = _why(exc)
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(1.0, left))
    raise ConfigError(key, shown, f"no {what} answers on {host}:{port} ({why}; {_tries(tries)} in "
                      f"{timeout_s:g} s){_longer(timeout_key)}")


def _longer(timeout_key: str) -> str:
    return f"; {timeout_key} waits longer" if timeout_key else ""


def _tries(n: int) -> str:
    return "1 try" if n == 1 else f"{n} tries"


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"host not found: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return str(getattr(exc, "strerror", None) or exc)


def check_folder(key: str, folder: Path, shown: object = None, create: bool = True) -> None:
    """Raise a :class:`ConfigError` naming ``key`` unless ``folder`` is (or can be made) a
    folder that this process can write into; it is created if missing (``create``; else its
    nearest existing folder must be writable)."""
    value = str(folder) if shown is None else shown
    for p in (folder, *folder.parents):
        if p.exists():
            if not p.is_dir():
                where = "it is a file" if p == folder else f"{p} is a file"
                raise ConfigError(key, value, f"must be a folder, and {where}")
            break
    if not create:
        if not os.access(p, os.W_OK | os.X_OK):  # (a read-only file system too, for root as well)
            why = "a read-only file system" if _read_only(p) else "permission denied"
            raise ConfigError(key, value, f"cannot create or write the folder {folder} ({p}: {why})")
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(key, value, f"cannot create the folder {folder} ({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(key, value, f"cannot write into the folder {folder} (permission denied)")


def _read_only(folder: Path) -> bool:
    return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)


__all__ = ["CONNECT_TIMEOUT_S", "check_folder", "check_timeout", "check_tracking_uri", "driver_error",
           "sqlalchemy_url"]
