"""Sweeps through the real CLI; results read back from the Optuna storage and MLflow."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml

from imbsweep._paths import PROJECT_ROOT
from tests.helpers.cli import popen_cli, run_cli
from tests.helpers.procs import interrupt_when, wait_until
from tests.helpers.stores import (
    check_one_to_one,
    finished,
    journal_path,
    local_study,
    mlflow_client,
    mlflow_db,
    trial_runs,
)


@pytest.mark.slow  # (make test-all: make test keeps to its 15 minutes on 2 cores)
def test_smoke_sweep_then_resume_to_a_higher_target(workdir: Path) -> None:
    p = run_cli(workdir, "sweep", "smoke")
    assert p.returncode == 0, p.stderr
    study = local_study(workdir, "smoke")
    assert len(finished(study)) == 4 and all(t.state.name == "COMPLETE" for t in study.trials)
    baseline = study.trials[0]
    assert baseline.user_attrs["imbsweep:baseline"] is True
    assert baseline.params == {"optimizer.lr": 0.005, "loss.class_weights": "none"}  # the defaults
    parent, children = trial_runs(workdir, "smoke")
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_value"] == study.best_value
    assert parent.data.tags["imbsweep.best_trial"] == str(study.best_trial.number)
    # the progress curve has a point per finished trial, however its points were batched
    history = mlflow_client(workdir).get_metric_history(parent.info.run_id, "trials_finished")
    assert [(m.step, m.value) for m in history] == [(n, float(n)) for n in range(1, 5)]
    artifacts = {a.path for a in mlflow_client(workdir).list_artifacts(parent.info.run_id)}
    assert artifacts == {"sweep.yaml", "optimization_results.yaml", "optimization_history.png",
                         "param_importances.png"}
    check_one_to_one(study, children)
    assert "best trial #" in p.stdout and "per trick" in p.stdout  # the end-of-sweep summary
    (results,) = workdir.glob("multirun/*/*/optimization_results.yaml")
    saved = yaml.safe_load(results.read_text())
    assert saved["best_value"] == study.best_value and saved["best_params"] == study.best_params

    # the same command again resumes towards a new total, then does nothing more
    before = {t.params["optimizer.lr"] for t in study.trials}
    for _ in range(2):
        p = run_cli(workdir, "sweep", "smoke", "hydra.sweeper.n_trials=6")
        assert p.returncode == 0, p.stderr
    study = local_study(workdir, "smoke")
    assert len(finished(study)) == 6
    new = {t.params["optimizer.lr"] for t in study.trials[4:]}
    assert not new & before  # a resumed seeded sampler draws new points, not the same ones
    parent2, children = trial_runs(workdir, "smoke")
    assert parent2.info.run_id == parent.info.run_id  # the parent run is reused
    check_one_to_one(study, children)


def test_pruning_really_stops_training(workdir: Path) -> None:
    # Baseline lr 0.005 completes first; every lr=1e-7 trial is at chance after epoch 1 and
    # the median pruner (1 startup trial) compares it with completed lr=0.005 trials only.
    # The grid has two lr=1e-7 points among four, three are drawn: pruning is certain.
    p = run_cli(workdir, "sweep", "smoke", "hydra.sweeper.study_name=prune", "trainer.epochs=5",
                "optimizer.lr=choice(0.005,1e-7)", "hydra/sweeper/sampler=grid",
                "hydra.sweeper.pruner.name=median", "+hydra.sweeper.pruner.n_startup_trials=1",
                "+hydra.sweeper.pruner.n_warmup_steps=0")
    assert p.returncode == 0, p.stderr
    study = local_study(workdir, "prune")
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned and all(t.params["optimizer.lr"] == 1e-7 for t in pruned)
    assert len(finished(study)) == 4
    parent, children = trial_runs(workdir, "prune")
    check_one_to_one(study, children)
    client = mlflow_client(workdir)
    for run in children:
        tags, name = run.data.tags, f"{run.data.tags['imbsweep.trick']} trial-{run.data.tags['imbsweep.trial']}"
        if tags["imbsweep.state"] == "pruned":
            assert run.info.status == "FINISHED" and "pruned at epoch 1" in tags["imbsweep.prune_reason"]
            assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 1  # not 5
            # what it is and how it ended, readable in the UI; what it ran with, as every run has
            assert run.info.run_name == f"{name} pruned"
            assert tags["mlflow.note.content"].startswith("pruned: pruned at epoch 1")
            assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"config.yaml"}
        else:
            assert run.info.run_name == name and "mlflow.note.content" not in tags


def test_failing_trials_are_recorded_and_stop_the_sweep_past_the_failure_rate(workdir: Path) -> None:
    # a model that passes the checks made before the study opens and breaks when a trial trains
    # (a bad fixed value such as loss.class_weights=bogus is one line before any trial: test_bad_input)
    target = "tests.helpers.own_models.BreaksInTraining"
    p = run_cli(workdir, "sweep", "smoke", "hydra.sweeper.study_name=failing", f"model._target_={target}",
                pythonpath=PROJECT_ROOT)
    assert p.returncode == 1, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("imbsweep:")]
    assert len(lines) == 1, p.stderr
    assert re.fullmatch(r"imbsweep: error: study 'failing' stopped: 3 of 4 trials failed \(more than "
                        r"hydra.sweeper.max_failure_rate=0.5\); last error: RuntimeError: "
                        r"the model broke on a batch of \d+", lines[0]), lines[0]
    study = local_study(workdir, "failing")
    assert [t.state.name for t in study.trials] == ["FAIL"] * 3
    assert "the model broke" in study.trials[0].user_attrs["fail_reason"]
    parent, children = trial_runs(workdir, "failing")
    assert parent.info.status == "FAILED"
    assert [r.info.status for r in children] == ["FAILED"] * 3
    assert "the model broke" in children[0].data.tags["imbsweep.failure_reason"]
    check_one_to_one(study, children)
    client = mlflow_client(workdir)
    for run in children:
        assert run.info.run_name.endswith(" failed")
        assert run.data.tags["mlflow.note.content"].startswith("failed: RuntimeError: the model broke")
        config = client.download_artifacts(run.info.run_id, "config.yaml", str(workdir / run.info.run_id))
        assert f"_target_: {target}" in Path(config).read_text()


@pytest.mark.parametrize(("override", "words"), [
    ("optimizer.lr=interval(1,0)", ["optimizer.lr='interval(1,0)'", "low < high"]),
    ("hydra/sweeper/sampler=annealing", ["hydra/sweeper/sampler=annealing", "random, tpe"]),
    ("hydra.sweeper.sampler.name=random", ["hydra.sweeper.sampler.name", "hydra/sweeper/sampler=random"]),
    ("hydra.sweeper.pruner.name=asha", ["hydra.sweeper.pruner.name='asha'", "successive_halving"]),
    ("hydra.sweeper.n_trials=0", ["hydra.sweeper.n_trials=0", ">= 1"]),
])
def test_bad_sweep_settings_fail_before_any_trial(tmp_path: Path, override: str, words: list[str]) -> None:
    p = run_cli(tmp_path, "sweep", "smoke", override)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("imbsweep: error: "), p.stderr
    assert all(w in lines[0] for w in words)
    assert not mlflow_db(tmp_path).exists()  # no run was recorded


def _study_is(workdir: Path, name: str, ready: Callable[[optuna.Study], bool]) -> Callable[[], bool]:
    """Whether study ``name`` of the workdir's journal is ``ready`` yet (false while it does not exist)."""

    def check() -> bool:
        if not journal_path(workdir).exists():
            return False
        try:
            return ready(local_study(workdir, name))
        except KeyError:  # the study is not created yet
            return False

    return check


def _running_after_one_complete(study: optuna.Study) -> bool:
    """One trial done and the next one training (its MLflow run exists)."""
    states = [t.state.name for t in study.trials]
    return "COMPLETE" in states and any(t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs
                                        for t in study.trials)


LONG = ("trainer.epochs=60", "hydra.sweeper.n_trials=3")


# both in make test-all (make test's 15 minutes): a kill and its rerun stay in make test through
# test_a_killed_worker_is_reaped_and_its_trial_run_again, Ctrl-C through test_any_app and test_cli
@pytest.mark.parametrize("sig", [pytest.param(signal.SIGINT, marks=pytest.mark.slow),
                                 pytest.param(signal.SIGKILL, marks=pytest.mark.slow)],
                         ids=["ctrl-c", "sigkill"])
def test_an_interrupted_or_killed_sweep_resumes_to_exactly_the_target(tmp_path: Path, sig: int) -> None:
    proc = popen_cli(tmp_path, "sweep", "smoke", *LONG)
    err = interrupt_when(proc, _study_is(tmp_path, "smoke", _running_after_one_complete), sig)
    study = local_study(tmp_path, "smoke")
    (cut,) = [t for t in study.trials if t.state.name in ("RUNNING", "FAIL")]
    parent, children = trial_runs(tmp_path, "smoke")
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
        assert cut.state.name == "FAIL" and cut.user_attrs["imbsweep:requeued"] is True
        assert parent.info.status == "KILLED"
        assert [r.info.status for r in children if r.data.tags["imbsweep.trial"] == str(cut.number)] == ["KILLED"]
    else:  # SIGKILL: nothing could clean up; the trial and its MLflow run are left RUNNING
        assert cut.state.name == "RUNNING"

    p = run_cli(tmp_path, "sweep", "smoke", *LONG)  # the same command resumes
    assert p.returncode == 0, p.stderr
    study = local_study(tmp_path, "smoke")
    assert len(finished(study)) == 3
    assert not [t for t in study.trials if t.state.name in ("RUNNING", "WAITING")]
    cut = study.trials[cut.number]
    assert cut.state.name == "FAIL" and cut.user_attrs["imbsweep:requeued"] is True
    (redo,) = [t for t in study.trials if t.user_attrs.get("imbsweep:requeued_from") == cut.number]
    assert redo.state.name == "COMPLETE" and redo.params == cut.params  # the same point, re-run
    parent, children = trial_runs(tmp_path, "smoke")
    assert parent.info.status == "FINISHED"
    assert not [r for r in children if r.info.status == "RUNNING"]  # the dead run was ended
    kept = [r for r in children if r.data.tags["imbsweep.trial"] != str(cut.number)]
    check_one_to_one(study, kept, skip=(cut.number,))


@pytest.mark.slow  # in make test: two commands on PostgreSQL (test_storages) and n_jobs=2 (test_tournament)
def test_two_workers_on_one_storage_share_the_study_exactly(tmp_path: Path) -> None:
    args = ("sweep", "smoke", "hydra.sweeper.study_name=shared", "hydra.sweeper.n_trials=10",
            "trainer.epochs=25")
    a, b = popen_cli(tmp_path, *args), popen_cli(tmp_path, *args)
    for proc in (a, b):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    study = local_study(tmp_path, "shared")
    assert len(study.trials) == 10 and len(finished(study)) == 10
    assert sorted(t.number for t in study.trials) == list(range(10))
    assert len({t.user_attrs["imbsweep:pid"] for t in study.trials}) == 2  # both did work
    _, children = trial_runs(tmp_path, "shared")
    check_one_to_one(study, children)


@pytest.mark.slow  # (make test-all: make test keeps to its 15 minutes on 2 cores)
def test_no_more_workers_than_trials(tmp_path: Path) -> None:
    p = run_cli(tmp_path, "sweep", "smoke", "hydra.sweeper.study_name=few", "hydra.sweeper.n_jobs=8",
                "hydra.sweeper.n_trials=2", "trainer.epochs=1")
    assert p.returncode == 0, p.stderr
    out = p.stdout + p.stderr
    assert "hydra.sweeper.n_jobs=8 for 2 trials: 2 worker(s)" in out and "started 1 more worker process(es)" in out
    assert len(finished(local_study(tmp_path, "few"))) == 2


@pytest.mark.slow  # two workers on one storage are tested in make test (keeps make test under 15 min)
def test_four_local_workers_share_the_default_storage(tmp_path: Path) -> None:
    p = run_cli(tmp_path, "sweep", "smoke", "hydra.sweeper.study_name=jobs", "hydra.sweeper.n_jobs=4",
                "hydra.sweeper.n_trials=12", "trainer.epochs=25")
    assert p.returncode == 0, p.stderr
    assert "locked" not in p.stderr.lower()
    study = local_study(tmp_path, "jobs")
    assert sorted(t.number for t in study.trials) == list(range(12)) and len(finished(study)) == 12
    # how many of the 4 get a trial depends on their start-up time; at least two always do
    assert len({t.user_attrs["imbsweep:pid"] for t in study.trials}) >= 2
    parent, children = trial_runs(tmp_path, "jobs")
    assert parent.info.status == "FINISHED" and {r.info.status for r in children} == {"FINISHED"}
    check_one_to_one(study, children)
    # no oversubscription: the cores are split between the 4 workers' torch threads
    assert {r.data.params["trainer.num_threads"] for r in children} == {str(max(1, (os.cpu_count() or 1) // 4))}


def test_a_killed_worker_is_reaped_and_its_trial_run_again(tmp_path: Path) -> None:
    """SIGKILL of one of two workers: the sweep it belonged to reaps it (an unreaped child
    stays a zombie whose /proc entry looked alive, and the sweep once waited for it for
    ever), fails and re-queues its trial, and ends by itself with exactly n_trials."""
    # long enough trials that the worker, which starts a few seconds after the sweep, gets some
    proc = popen_cli(tmp_path, "sweep", "smoke", "hydra.sweeper.study_name=reap", "hydra.sweeper.n_jobs=2",
                     "hydra.sweeper.n_trials=6", "trainer.epochs=200")
    try:
        def worker_training(study: optuna.Study) -> bool:
            return any(t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs
                       and t.user_attrs["imbsweep:pid"] != proc.pid for t in study.trials)

        wait_until(proc, _study_is(tmp_path, "reap", worker_training))
        (victim,) = [t for t in local_study(tmp_path, "reap").trials if t.state.name == "RUNNING"
                     and t.user_attrs["imbsweep:pid"] != proc.pid]
        os.kill(victim.user_attrs["imbsweep:pid"], signal.SIGKILL)
        _, err = proc.communicate(timeout=180)  # ends by itself
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    study = local_study(tmp_path, "reap")
    assert len(finished(study)) == 6 and not [t for t in study.trials if t.state.name in ("RUNNING", "WAITING")]
    cut = study.trials[victim.number]
    assert cut.state.name == "FAIL" and cut.user_attrs["imbsweep:requeued"] is True
    assert f"worker process {victim.user_attrs['imbsweep:pid']} died" in cut.user_attrs["fail_reason"]
    (redo,) = [t for t in study.trials if t.user_attrs.get("imbsweep:requeued_from") == cut.number]
    assert redo.state.name == "COMPLETE" and redo.params == cut.params
    parent, children = trial_runs(tmp_path, "reap")
    assert parent.info.status == "FINISHED" and not [r for r in children if r.info.status == "RUNNING"]
    (dead,) = [r for r in children if r.info.run_id == victim.user_attrs["mlflow_run_id"]]
    assert dead.info.status == "FAILED" and dead.data.tags["imbsweep.state"] == "failed"
    check_one_to_one(study, [r for r in children if r is not dead], skip=(cut.number,))


@pytest.mark.slow  # (~45 s on 2 cores: make test-all runs it; make test stays under 15 minutes)
def test_processes_started_together_draw_no_identical_point(tmp_path: Path) -> None:
    """Three commands on one study at the same moment: each process seeds its sampler from
    the study's trial count at its first ask, under the budget lock, so no two draw the same
    stream (with the count at start-up, all three drew the same points); the baseline
    (the config's defaults) is the one point enqueued, once."""
    args = ("sweep", "smoke", "hydra.sweeper.study_name=together", "hydra.sweeper.n_trials=10",
            "hydra/sweeper/sampler=random")
    procs = [popen_cli(tmp_path, *args) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    study = local_study(tmp_path, "together")
    assert len(finished(study)) == 10
    lrs = [t.params["optimizer.lr"] for t in study.trials]
    assert len(set(lrs)) == len(lrs), lrs
    # and one process alone on a fresh study draws the same points every time
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    alone = [run_cli(tmp_path / d, "sweep", "smoke", "hydra.sweeper.n_trials=5", "hydra/sweeper/sampler=random")
             for d in ("a", "b")]
    assert all(p.returncode == 0 for p in alone), [p.stderr for p in alone]
    assert [t.params for t in local_study(tmp_path / "a", "smoke").trials] == \
        [t.params for t in local_study(tmp_path / "b", "smoke").trials]
