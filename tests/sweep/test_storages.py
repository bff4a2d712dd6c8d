"""Storages and the stock tools: multi-objective studies, PostgreSQL shared by two workers,
and the study opened by the `optuna` CLI and optuna-dashboard."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml

from tests.helpers.cli import CLI, OPTUNA, cli_env, popen_cli, run_cli
from tests.helpers.procs import free_port, start_server, stop_server, wait_for_http
from tests.helpers.stores import check_one_to_one, finished, journal_path, local_study, trial_runs


@pytest.mark.slow  # (make test-all; several objectives stay in make test: the official multi-objective example)
def test_multi_objective_sweep_reports_the_pareto_front(workdir: Path) -> None:
    p = run_cli(workdir, "sweep", "smoke", "hydra.sweeper.study_name=pareto", "hydra.sweeper.n_trials=5",
                "objective.metrics=[{metric:val/balanced_acc,direction:maximize},"
                "{metric:val/ece,direction:minimize}]", "hydra/sweeper/sampler=nsgaii")
    assert p.returncode == 0, p.stderr
    study = local_study(workdir, "pareto")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert len(finished(study)) == 5
    (results,) = [f for f in workdir.glob("multirun/*/*/optimization_results.yaml")
                  if "solutions" in yaml.safe_load(f.read_text())]
    saved = yaml.safe_load(results.read_text())["solutions"]
    assert sorted(s["values"] for s in saved) == sorted(t.values for t in study.best_trials)
    _, children = trial_runs(workdir, "pareto")
    check_one_to_one(study, children)
    for run in children:  # each trial's values are the run's selected-epoch metrics
        trial = study.trials[int(run.data.tags["imbsweep.trial"])]
        assert trial.values == [run.data.metrics["val/selected/balanced_acc"], run.data.metrics["val/selected/ece"]]
    assert "Pareto front of val/balanced_acc, val/ece" in p.stdout


@pytest.mark.slow  # another launcher; the basic one runs in every sweep test (keeps make test under 15 min)
def test_works_with_the_joblib_launcher(tmp_path: Path) -> None:
    # jobs run in joblib's worker processes: the trial context, pruner and MLflow still work
    p = run_cli(tmp_path, "sweep", "smoke", "hydra/launcher=joblib", "hydra.sweeper.pruner.name=median")
    assert p.returncode == 0, p.stderr
    study = local_study(tmp_path, "smoke")
    assert len(finished(study)) == 4 and {t.state.name for t in study.trials} == {"COMPLETE"}
    assert all(len(t.intermediate_values) == 3 for t in study.trials)  # reported every epoch
    _, children = trial_runs(tmp_path, "smoke")
    check_one_to_one(study, children)


def test_bad_objective_list_is_one_line(tmp_path: Path) -> None:
    p = run_cli(tmp_path, "sweep", "smoke", "objective.metrics=[{metric:test/acc,direction:maximize}]")
    assert p.returncode == 2
    assert p.stderr.strip() == ("imbsweep: error: objective.metrics[0].metric='test/acc': must be a "
                                "validation metric (val/...)")


@pytest.mark.slow  # (~25 s: make test-all; PostgreSQL stays in make test through the outage and README tests)
def test_two_workers_share_a_postgresql_study_exactly(tmp_path: Path, pg_url: str) -> None:
    name = "pg"
    args = ("sweep", "smoke", f"hydra.sweeper.study_name={name}", f"hydra.sweeper.storage={pg_url}",
            "hydra.sweeper.n_trials=8", "trainer.epochs=25")
    procs = [popen_cli(tmp_path, *args) for _ in range(2)]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
        study = optuna.load_study(study_name=name, storage=pg_url)
        assert sorted(t.number for t in study.trials) == list(range(8))
        assert len(finished(study)) == 8
        assert len({t.user_attrs["imbsweep:pid"] for t in study.trials}) == 2
        _, children = trial_runs(tmp_path, name)
        check_one_to_one(study, children)
    finally:
        for proc in procs:
            proc.kill()


def test_stock_optuna_cli_and_dashboard_read_the_local_study(workdir: Path) -> None:
    if not journal_path(workdir).exists():
        assert run_cli(workdir, "sweep", "smoke", "hydra.sweeper.study_name=tools").returncode == 0
    journal = str(journal_path(workdir))
    listed = subprocess.run([OPTUNA, "studies", "--storage", journal,
                             "--storage-class", "JournalFileBackend", "-f", "json"],
                            capture_output=True, text=True, check=True)
    studies = {s["name"]: s["n_trials"] for s in json.loads(listed.stdout)}
    name = next(iter(studies))
    assert studies[name] == len(local_study(workdir, name).trials)

    port = free_port()
    proc = start_server([*CLI, "dashboard", "--port", str(port)], cwd=workdir, env=cli_env())
    try:
        body = json.loads(wait_for_http(f"http://127.0.0.1:{port}/api/studies", proc))
        assert set(studies) <= {s["study_name"] for s in body["study_summaries"]}
    finally:
        stop_server(proc)


def test_dashboard_without_a_study_is_a_clear_error(tmp_path: Path) -> None:
    p = run_cli(tmp_path, "dashboard")
    assert p.returncode == 2 and "no such journal file; run a sweep first" in p.stderr


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_trial_whose_heartbeat_stopped_is_failed_and_requeued(pg_url: str, tmp_path: Path) -> None:
    from optuna.distributions import FloatDistribution

    from imbsweep.names import ATTR_HOST, ATTR_PID, ATTR_REQUEUED
    from imbsweep.sweep import open_storage
    from imbsweep.sweep._workers import recover_dead

    storage = open_storage(pg_url, tmp_path, heartbeat_interval=1)
    study = optuna.create_study(study_name="hb", storage=storage)
    trial = study.ask({"x": FloatDistribution(0, 1)})
    trial.set_user_attr(ATTR_HOST, "another-machine")  # its pid cannot be checked from here
    trial.set_user_attr(ATTR_PID, 12345)
    storage.record_heartbeat(trial._trial_id)
    assert recover_dead(study) == []  # a fresh heartbeat: alive
    time.sleep(3)  # the grace period is twice the interval
    (dead,) = recover_dead(study)
    assert dead.number == trial.number
    failed, waiting = study.trials
    assert failed.state.name == "FAIL" and failed.user_attrs[ATTR_REQUEUED] is True
    assert failed.user_attrs["fail_reason"] == "no heartbeat from its worker on another-machine"
    assert waiting.state.name == "WAITING" and waiting.user_attrs["imbsweep:requeued_from"] == trial.number
    assert waiting.user_attrs["imbsweep:lost_jobs"] == 1  # a loss: the third of the same parameters fails for good
    assert waiting.system_attrs["fixed_params"] == failed.params
    assert recover_dead(study) == []  # recovered once only


HOLD = '''
import sys, time
from imbsweep.sweep._journal import journal_lock
lock = journal_lock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(600)
'''


def test_a_journal_lock_held_by_a_killed_process_is_free_at_once(tmp_path: Path) -> None:
    """The journal's lock excludes other processes while held, and a process killed while it
    holds it leaves nothing to wait out (Optuna's lock file was broken only after 30 s)."""
    import signal
    import sys

    from imbsweep.sweep._journal import journal_lock

    path = str(tmp_path / "journal.log")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, path], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        import fcntl
        import os

        fd = os.open(path + ".flock", os.O_RDWR)
        with pytest.raises(BlockingIOError):  # held by the other process
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        lock = journal_lock(path)
        t = time.monotonic()
        lock.acquire()
        assert time.monotonic() - t < 1.0
        lock.release()
    finally:
        holder.kill()
        holder.wait()
