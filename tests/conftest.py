"""Shared fixtures: the real config (Hydra's compose API, shrunk), the real CLI in a
subprocess, and a real MLflow store read back with ``MlflowClient``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from imbsweep._paths import conf_dir

#: small and fast: digits (bundled with scikit-learn), an MLP, 2 epochs
TINY = ("data=digits_lt", "model=mlp", "model.hidden_sizes=[32]", "trainer.epochs=2",
        "trainer.batch_size=64")
CLI = [sys.executable, "-m", "imbsweep"]
PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"


if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    # started as a background job (`cmd &` in a script): SIGINT is ignored and the CLI
    # processes the tests start would inherit that, so the Ctrl-C tests could not press Ctrl-C
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _no_outside_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests write only to their own stores."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose the real ``conf/config.yaml`` with TINY and the given overrides."""

    def make(*overrides: str, tiny: bool = True) -> DictConfig:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose("config", overrides=[f"state_dir={tmp_path / 'mlruns'}",
                                                *(TINY if tiny else ()), *overrides])

    return make


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    return env


def run_cli(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``imbsweep ARGS`` in ``cwd``, as a user would type it."""
    return subprocess.run([*CLI, *args], cwd=cwd, env=cli_env(), capture_output=True,
                          text=True, timeout=timeout)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a server a test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mlflow_client(workdir: Path):  # type: ignore[no-untyped-def]
    """A client on a workdir's local store, opened under the same lock as the product's
    (a reader that opens the file while a run is creating it would race the migration)."""
    from imbsweep._client import make_client

    return make_client(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A launch directory shared by a module's CLI tests (one MLflow store, migrated once);
    each test uses its own experiment name."""
    yield tmp_path_factory.mktemp("work")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database (dropped afterwards), so workers meet an empty schema."""
    from sqlalchemy import create_engine, text

    db = f"imbsweep_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{db}"'))
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI"):
            raise  # .ci/run starts PostgreSQL: in CI it must be there
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({exc})")
    try:
        yield f"{PG_SERVER}/{db}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


