"""The multi-machine topology: docker-compose.yml checked against the code (no Docker engine
here), and the same topology run on loopback: PostgreSQL for Optuna, an `mlflow server`,
and two workers that know both only from the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from imbsweep._paths import PACKAGE_CONF, PROJECT_ROOT
from tests.helpers.cli import CLI, cli_env, csv_by_arm, popen_cli
from tests.helpers.procs import free_port, start_server, stop_server, wait_for_http
from tests.helpers.stores import check_one_to_one, finished


def test_compose_file_describes_the_topology_the_code_expects() -> None:
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "mlflow", "dashboard", "worker"}
    worker = services["worker"]
    # the variables the code reads: the sweeper's storage default and the tracking config
    plugin = (PROJECT_ROOT / "src/hydra_plugins/imbsweep_optuna_sweeper/config.py").read_text()
    assert "oc.env:OPTUNA_STORAGE" in plugin and worker["environment"]["OPTUNA_STORAGE"].startswith("postgresql")
    assert "oc.env:MLFLOW_TRACKING_URI" in (PACKAGE_CONF / "tracking" / "local.yaml").read_text()
    assert worker["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    # the worker runs a real sweep file through our CLI; several replicas share the study
    command = worker["command"]
    assert command[0] == "sweep" and (PACKAGE_CONF / "sweep" / f"{command[1]}.yaml").exists()
    assert worker["deploy"]["replicas"] >= 2
    # credentials only by reference to the environment
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    assert "${POSTGRES_PASSWORD" in text and "POSTGRES_PASSWORD: imbsweep" not in text
    import mlflow

    assert services["mlflow"]["image"].endswith(f":v{mlflow.__version__}")
    assert "--artifacts-destination" in services["mlflow"]["command"]
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "torch==2.13.0" in dockerfile and "whl/cpu" in dockerfile


@pytest.mark.slow  # (~45 s on 2 cores: make test-all runs it; make test stays under 15 minutes)
def test_the_topology_on_loopback(tmp_path: Path, pg_url: str) -> None:
    from mlflow import MlflowClient

    port = free_port()
    server = start_server(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    storage = pg_url.replace("postgres@", "postgres:s3cret@")  # trust auth: any password works
    try:
        wait_for_http(f"{uri}/health", server, timeout=90, request_timeout=2)
        env = {**cli_env(), "OPTUNA_STORAGE": storage, "MLFLOW_TRACKING_URI": uri}
        args = ("sweep", "smoke", "hydra.sweeper.n_trials=6", "trainer.epochs=15")
        workers = [popen_cli(tmp_path, *args, env=env) for _ in range(2)]
        for w in workers:
            _, err = w.communicate(timeout=300)
            assert w.returncode == 0, err
        study = optuna.load_study(study_name="smoke", storage=pg_url)
        assert sorted(t.number for t in study.trials) == list(range(6)) and len(finished(study)) == 6
        assert len({t.user_attrs["imbsweep:pid"] for t in study.trials}) == 2

        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("smoke")
        assert exp is not None
        runs = client.search_runs([exp.experiment_id])
        (parent,) = [r for r in runs if r.data.tags.get("imbsweep.role") == "parent"]
        children = sorted((r for r in runs if r is not parent), key=lambda r: int(r.data.tags["imbsweep.trial"]))
        check_one_to_one(study, children)
        local = client.download_artifacts(children[0].info.run_id, "config.yaml", str(tmp_path / "dl"))
        assert "trainer:" in Path(local).read_text()  # artifacts go through the server
        # the password is nowhere: MLflow params and tags, artifacts, Hydra's saved overrides
        for r in runs:
            assert "s3cret" not in repr(r.data.params) + repr(r.data.tags)
        sweep_yaml = client.download_artifacts(parent.info.run_id, "sweep.yaml", str(tmp_path / "dl2"))
        assert "s3cret" not in Path(sweep_yaml).read_text()
        for f in (tmp_path / "multirun").rglob("*"):
            assert not f.is_file() or "s3cret" not in f.read_text(errors="ignore"), f
        # compare and export read the same study through the tracking server
        p = subprocess.run([*CLI, "compare", "smoke", "--format", "csv", "--no-report"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        rows = csv_by_arm(p.stdout).values()
        assert {r["trick"] for r in rows} == {c.data.tags["imbsweep.trick"] for c in children}
        p = subprocess.run([*CLI, "export", "smoke", "--out", str(tmp_path / "best")], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        exported = (tmp_path / "best" / "smoke.yaml").read_text()
        assert "s3cret" not in exported and uri not in exported and "postgresql" not in exported
    finally:
        stop_server(server)
