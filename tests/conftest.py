"""Shared fixtures: the real config (Hydra's compose API, shrunk), a launch directory shared
by a module's CLI tests, a synthetic study, a fresh PostgreSQL database. The helpers they
build on, which tests use too, live in ``tests/helpers/``."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import DictConfig

from tests.helpers.configs import TINY, MakeCfg, compose_config
from tests.helpers.stores import mlflow_db
from tests.helpers.synthetic import SYN_RESEEDS, SYN_TRIALS, SynStore, make_study

PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"


if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    # started as a background job (`cmd &` in a script): SIGINT is ignored and the CLI
    # processes the tests start would inherit that, so the Ctrl-C tests could not press Ctrl-C
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _no_outside_tracking(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests write only to their own stores, and no test sees the Hydra job an earlier one ran
    in this process (code that asks ``HydraConfig.initialized()`` behaves as in a job)."""
    from hydra.core.hydra_config import HydraConfig

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    yield
    HydraConfig.instance().cfg = None


@pytest.fixture
def make_cfg(tmp_path: Path) -> MakeCfg:
    """Compose the real ``conf/config.yaml`` with TINY and the given overrides."""

    def make(*overrides: str, tiny: bool = True) -> DictConfig:
        return compose_config(f"state_dir={tmp_path / 'mlruns'}", *(TINY if tiny else ()), *overrides)

    return make


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A launch directory shared by a module's CLI tests (one MLflow store, migrated once);
    each test uses its own experiment name."""
    yield tmp_path_factory.mktemp("work")


@pytest.fixture(scope="session")
def syn_store(tmp_path_factory: pytest.TempPathFactory) -> SynStore:
    """A launch directory whose local store holds the synthetic study ``syn`` (written straight
    into MLflow, no training: tests/helpers/synthetic.py), made once for the tests of compare,
    export and their commands: they read its runs (the report adds to its parent run)."""
    from imbsweep._client import make_client

    work = tmp_path_factory.mktemp("cmp")
    uri = f"sqlite:///{mlflow_db(work)}"
    info = make_study(make_client(uri), "syn", SYN_TRIALS, work / "mlruns" / "artifacts", reseeds=SYN_RESEEDS)
    return work, uri, info


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


