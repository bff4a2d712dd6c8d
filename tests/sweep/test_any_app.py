"""The sweeper on a user's own Hydra app (not imbsweep's): a plain ``@hydra.main`` function
in a temporary folder, run as its user runs it (``python app.py -m …``) in a subprocess, the
study and the record read back from Optuna's storage and MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.cli import cli_env, csv_by_arm, run_cli
from tests.helpers.stores import finished, local_study, parent_and_children

APP = '''
import json, os, time
import hydra, mlflow
from omegaconf import DictConfig
import imbsweep


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    active = mlflow.active_run()
    mlflow.log_metric("inside", 1.0)  # the user's own MLflow call
    loss = (cfg.x - 1.0) ** 2 + cfg.y
    for step in range(cfg.steps):
        time.sleep(cfg.sleep)
        imbsweep.report(step, loss + 1.0 / (step + 1))
    time.sleep(cfg.sleep)
    if cfg.get("posthoc") is not None:  # the app's own post-hoc score, for a post-hoc arm
        mlflow.log_metric("objective_posthoc", loss + cfg.posthoc)
    mark = {"pid": os.getpid(), "run": active.info.run_id if active else None, "cwd": os.getcwd(),
            "keys": sorted(cfg)}
    with open(os.path.join(cfg.marks, f"{os.getpid()}-{time.time_ns()}.json"), "w") as f:
        json.dump(mark, f)
    mode = cfg.get("mode")  # what users' own code does with MLflow, and how tasks go wrong
    if mode == "nested":
        with mlflow.start_run(nested=True):
            mlflow.log_metric("nested", 1.0)
    elif mode == "experiment":
        mlflow.set_experiment("elsewhere")
    elif mode == "uri":
        mlflow.set_tracking_uri("sqlite:///" + os.path.join(cfg.marks, "other.db"))
    elif mode == "left_open":
        mlflow.start_run(nested=True)
    elif mode == "raise":
        raise RuntimeError("the task broke")
    elif mode == "store_down" and len(os.listdir(cfg.marks)) >= 2:  # the store refuses the app's write
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE
        raise MlflowException("(sqlite3.OperationalError) database or disk is full", error_code=TEMPORARILY_UNAVAILABLE)
    elif mode == "returns_nan":
        return float("nan")
    elif mode == "text":
        return "not a number"
    if cfg.get("pair"):
        return loss, -loss
    return loss


if __name__ == "__main__":
    main()
'''
CONFIG = '''
defaults:
  - override hydra/sweeper: imbsweep_optuna
  - _self_

x: 0.0
y: 0
steps: 0
sleep: 0.0
seed: 0
marks: ???
'''


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """The user's app in its own folder (its launch folder too), with a folder for its marks."""
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(CONFIG)
    (tmp_path / "marks").mkdir()
    return tmp_path


def run_app(app: Path, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "app.py", "-m", f"marks={app / 'marks'}",
                           f"hydra.sweep.dir={app / 'sweep'}", *overrides],
                          cwd=app, env=cli_env(), capture_output=True, text=True, timeout=timeout)


def marks(app: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((app / "marks").glob("*.json"))]


def test_two_workers_run_the_users_function_and_record_every_trial(app: Path) -> None:
    p = run_app(app, "x=interval(-2.0, 2.0)", "y=range(0, 2)", "hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=2",
                "hydra.sweeper.study_name=mine", "hydra.sweeper.objective_names=[loss]", "sleep=0.4",
                "hydra.job.chdir=true")
    assert p.returncode == 0, p.stderr[-3000:]
    study = local_study(app, "mine")
    assert len(study.trials) == 8 and len(finished(study)) == 8  # exactly n_trials, nothing added
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert study.metric_names == ["loss"]
    # every trial ran the user's function, in this process and in the started worker
    done = marks(app)
    assert len(done) == 8 and len({m["pid"] for m in done}) == 2
    assert all(m["keys"] == ["marks", "seed", "sleep", "steps", "x", "y"] for m in done)  # its config, as written
    assert all(Path(str(m["cwd"])).parent == app / "sweep" for m in done)  # hydra.job.chdir: its job folders
    parent, children = parent_and_children(app, "mine")
    assert parent.data.tags["imbsweep.app"] == "hydra" and parent.data.tags["imbsweep.app_name"] == "app"
    assert json.loads(parent.data.tags["imbsweep.objectives"]) == \
        [["loss", "minimize"]]
    assert len(children) == 8
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in study.trials}
    assert {m["run"] for m in done} == set(by_run) == {r.info.run_id for r in children}  # the active run
    for run in children:
        trial = by_run[run.info.run_id]
        assert run.info.status == "FINISHED" and run.data.tags["imbsweep.state"] == "complete"
        assert run.data.metrics["loss"] == pytest.approx(trial.value)  # its returned value, under its name
        assert run.data.metrics["inside"] == 1.0
        assert run.data.tags["imbsweep.trial"] == str(trial.number)
        assert float(run.data.params["x"]) == trial.params["x"] and run.data.params["y"] == str(trial.params["y"])
        assert not any(k.startswith(("trainer.", "data.", "objective.", "imbsweep")) for k in run.data.params)
    # the sweep's plumbing never reaches the app's own config or the job's overrides
    for job in (app / "sweep").glob("*/.hydra"):
        assert "trial" not in (job / "config.yaml").read_text()
        assert all(not o.startswith("hydra.") for o in yaml.safe_load((job / "overrides.yaml").read_text()))
    assert (app / "sweep" / "w1_0").is_dir()  # the worker's jobs, in folders of their own
    # range excludes its stop (Hydra's meaning): where the official plugin would sample it too, said once
    said = [ln for ln in (p.stdout + p.stderr).splitlines() if "range excludes its stop" in ln]
    assert len(said) == 1 and "y: range(0, 2) ends at 1, not 2" in said[0]
    results = yaml.safe_load((app / "sweep" / "optimization_results.yaml").read_text())
    assert results["best_value"] == study.best_value and results["best_params"] == study.best_params


@pytest.mark.slow  # (make test-all: make test keeps to its 15 minutes on 2 cores)
def test_a_users_report_draws_the_curve_and_prunes(app: Path) -> None:
    p = run_app(app, "x=interval(-2.0, 2.0)", "hydra.sweeper.n_trials=8", "hydra.sweeper.study_name=pruned",
                "steps=6", "+hydra.sweeper.pruner={name: median, n_startup_trials: 2, n_warmup_steps: 0}")
    assert p.returncode == 0, p.stderr[-3000:]
    study = local_study(app, "pruned")
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned and len(finished(study)) == 8
    _, children = parent_and_children(app, "pruned")
    by_run = {r.info.run_id: r for r in children}
    from tests.helpers.stores import mlflow_client

    for t in study.trials:
        run = by_run[t.user_attrs["mlflow_run_id"]]
        curve = mlflow_client(app).get_metric_history(run.info.run_id, "objective")
        assert sorted({m.step for m in curve}) == sorted(t.intermediate_values)  # the reports, step by step
        if t.state.name == "PRUNED":
            assert run.info.status == "FINISHED" and run.data.tags["imbsweep.state"] == "pruned"
            assert len(t.intermediate_values) < 6
        else:  # the returned value, under the objective's name at the curve's last step
            assert run.data.metrics["objective"] == pytest.approx(t.value)
            assert curve[-1].value == pytest.approx(t.value) and curve[-1].step == max(t.intermediate_values)
    # another metric the app logged is compared in the direction given; an objective keeps its own
    d = run_cli(app, "compare", "pruned", "--metric", "inside", "--direction", "minimize", "--no-report")
    assert d.returncode == 0 and "lower is better" in d.stdout, d.stderr
    d = run_cli(app, "compare", "pruned", "--direction", "maximize", "--no-report")
    assert d.returncode == 2 and "--direction=maximize: only with --metric" in d.stderr
    # a study whose app names no seed key cannot be re-seeded: one line saying how to name it
    c = run_cli(app, "compare", "pruned", "--reseed", "2")
    assert c.returncode == 2
    (line,) = c.stderr.strip().splitlines()
    assert "no seed key" in line and "hydra.sweeper.seed_key" in line


@pytest.mark.slow  # (make test-all: make test keeps to its 15 minutes on 2 cores)
def test_a_tournament_with_a_posthoc_arm_on_a_users_app(app: Path) -> None:
    """Arms, an equal budget and a post-hoc arm scored on what the app logged
    (``<objective>_posthoc``), then compare and export on its record."""
    p = run_app(app, "x=interval(-2.0, 2.0)", "hydra.sweeper.study_name=t", "+posthoc=-0.5",
                "+hydra.sweeper.arms={plain: {y: 0}, shifted: {y: 1}}", "hydra.sweeper.trials_per_arm=3",
                "+hydra.sweeper.posthoc_arms={plain_post: plain}", "hydra.sweeper.seed_key=seed",
                "+db.password=hunter2", "+db.url=postgresql://me:hunter2@db-host/x")
    assert p.returncode == 0, p.stderr[-3000:]
    jobs_before = {d.name: (d / ".hydra" / "overrides.yaml").read_text() for d in (app / "sweep").iterdir()
                   if d.is_dir()}
    arms = {a: local_study(app, f"t/{a}") for a in ("plain", "shifted")}
    assert all(len(finished(s)) == 3 for s in arms.values())
    for t in arms["plain"].trials:  # the post-hoc twin on the source arm's trials
        assert t.user_attrs["imbsweep:posthoc_value"] == pytest.approx(float(t.value or 0) - 0.5)
    results = yaml.safe_load((app / "sweep" / "optimization_results.yaml").read_text())
    assert set(results["arms"]) == {"plain", "shifted", "plain_post"}
    assert results["arms"]["plain_post"]["best_value"] == pytest.approx(results["arms"]["plain"]["best_value"] - 0.5)
    c = run_cli(app, "compare", "t", "--format", "csv", "--no-report")
    assert c.returncode == 0, c.stderr
    rows = csv_by_arm(c.stdout)
    assert set(rows) == {"plain", "shifted", "plain_post"} and rows["plain"]["trials"] == "3"
    assert float(rows["plain_post"]["best_val"]) == pytest.approx(float(rows["plain"]["best_val"]) - 0.5)
    e = run_cli(app, "export", "t", "--arm", "shifted")
    assert e.returncode == 0, e.stderr
    text = (app / "conf" / "best" / "t.yaml").read_text()
    best = yaml.safe_load(text)
    shifted = arms["shifted"].best_trial
    assert best["y"] == 1 and best["x"] == shifted.params["x"] and best["posthoc"] == -0.5  # the trial's overrides
    assert "reproduce: python app.py +best=t" in text and "not written: +db.password, +db.url" in text
    assert "db" not in best  # credentials on the command line are not recorded, so not exported
    # re-seeded through the app's own command: its folders are the re-runs' own, never the sweep's
    r = run_cli(app, "compare", "t", "--reseed", "2", "--format", "csv", "--no-report")
    assert r.returncode == 0, r.stderr[-3000:]
    assert all(row["seeds"] == "2" for row in csv_by_arm(r.stdout).values())
    assert {d.name: (d / ".hydra" / "overrides.yaml").read_text() for d in (app / "sweep").iterdir()
            if d.is_dir()} == jobs_before
    assert len(list((app / "multirun" / "reseed").glob("t-*/r*_*"))) == 4  # 2 arms' best x 2 seeds
    # no credential anywhere in the record or the files the sweep wrote
    for f in [*(app / "mlruns").rglob("*"), *(app / "sweep").rglob("*.json"), app / "conf" / "best" / "t.yaml"]:
        if f.is_file() and f.suffix not in (".db", ".log") and "datasets" not in f.parts:
            assert "hunter2" not in f.read_text(errors="replace"), f
    import sqlite3

    with sqlite3.connect(app / "mlruns" / "mlflow.db") as db:  # params, tags, metrics: every text in the store
        for table in ("params", "tags", "latest_metrics"):
            assert not [row for row in db.execute(f"select * from {table}") if "hunter2" in str(row)]


def test_a_bad_sweeper_setting_in_a_users_app_is_one_line(app: Path) -> None:
    p = run_app(app, "hydra.sweeper.direction=upward")
    assert p.returncode == 2
    (line,) = [ln for ln in p.stderr.strip().splitlines() if "Hydra14" not in ln]
    assert line.startswith("imbsweep: error: hydra.sweeper.direction='upward': must be minimize or maximize")
    assert not marks(app) and not (app / "mlruns" / "mlflow.db").exists()


def test_ctrl_c_in_a_users_trial_leaves_nothing_running_and_the_same_command_resumes(app: Path) -> None:
    """Ctrl-C while the user's function runs: its run ends KILLED, the trial is re-queued
    (uncounted), the parent run ends KILLED; the same command then ends with exactly n_trials."""
    import signal

    from tests.helpers.procs import interrupt_when
    from tests.helpers.stores import runs

    args = ["x=interval(-2.0, 2.0)", "hydra.sweeper.n_trials=3", "hydra.sweeper.study_name=cut", "steps=3",
            "sleep=0.4"]
    cmd = [sys.executable, "app.py", "-m", f"marks={app / 'marks'}", f"hydra.sweep.dir={app / 'sweep'}", *args]
    proc = subprocess.Popen(cmd, cwd=app, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def running() -> bool:  # the second trial has reported a step: its run is active
        try:
            return any(len(t.intermediate_values) >= 1 for t in local_study(app, "cut").trials[1:])
        except Exception:  # noqa: BLE001 - not created yet
            return False

    interrupt_when(proc, running, signal.SIGINT)
    assert proc.returncode != 0
    found = runs(app, "cut")
    assert found and all(r.info.status != "RUNNING" for r in found)
    assert any(r.info.status == "KILLED" for r in found)  # the cut trial's run (and the parent)
    study = local_study(app, "cut")
    assert len(finished(study)) == 1 and any(t.state.name == "WAITING" for t in study.trials)  # re-queued
    p = run_app(app, *args)
    assert p.returncode == 0, p.stderr[-3000:]
    study = local_study(app, "cut")
    assert len(finished(study)) == 3 and all(r.info.status != "RUNNING" for r in runs(app, "cut"))


def test_what_a_users_task_does_with_mlflow_or_returns_is_recorded_and_ended(app: Path) -> None:
    """One trial per case (the grid sampler): the task's own MLflow calls (a nested run, a run
    left open, another experiment or tracking URI set) leave the trial's run recorded and ended;
    a task that raises, returns NaN or text is a failed trial with its reason, in Optuna and
    MLflow alike; nothing is left RUNNING."""
    from tests.helpers.stores import runs

    modes = ["nested", "left_open", "experiment", "uri", "raise", "returns_nan", "text"]
    p = run_app(app, "hydra/sweeper/sampler=grid", f"+mode=choice({', '.join(modes)})", "hydra.sweeper.n_trials=7",
                "hydra.sweeper.study_name=modes", "hydra.sweeper.max_failure_rate=1.0")
    assert p.returncode == 0, p.stderr[-3000:]
    study = local_study(app, "modes")
    assert len(study.trials) == 7 and {t.params["+mode"] for t in study.trials} == set(modes)
    found = runs(app, "modes")
    assert all(r.info.status != "RUNNING" for r in found)
    by_id = {r.info.run_id: r for r in found}
    for t in study.trials:
        run, mode = by_id[t.user_attrs["mlflow_run_id"]], t.params["+mode"]
        if mode in ("raise", "returns_nan", "text"):
            assert t.state.name == "FAIL" and run.info.status == "FAILED"
            assert run.data.tags["imbsweep.state"] == "failed"
            why = {"raise": "RuntimeError: the task broke", "returns_nan": "must be finite. Got 'nan'",
                   "text": "must be float-castable. Got 'not a number'"}[mode]
            assert why in run.data.tags["imbsweep.failure_reason"] and why in t.user_attrs["fail_reason"]
        else:
            assert t.state.name == "COMPLETE" and run.info.status == "FINISHED"
            assert run.data.metrics["objective"] == pytest.approx(t.value) and run.data.metrics["inside"] == 1.0
    nested = [r for r in found if "nested" in r.data.metrics]
    (trial_of,) = [t for t in study.trials if t.params["+mode"] == "nested"]
    assert len(nested) == 1 and nested[0].data.tags["mlflow.parentRunId"] == trial_of.user_attrs["mlflow_run_id"]


@pytest.mark.slow  # (make test-all; a refused write stays in make test through imbsweep's own app)
def test_a_write_the_mlflow_store_refuses_in_a_users_trial_requeues_it_uncounted(app: Path) -> None:
    """The user's own MLflow call meets a store that refuses writes (a full disk): the platform's
    failure, not the trial's: one line, exit 1, the trial re-queued uncounted; once the store
    takes writes, the sweep ends with exactly n_trials (it used to count the trial failed)."""
    args = ("x=interval(-2.0, 2.0)", "hydra.sweeper.study_name=cut", "hydra.sweeper.n_trials=4")
    p = run_app(app, *args, "+mode=store_down")
    assert p.returncode == 1, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("imbsweep:")]
    assert len(errors) == 1 and "the MLflow store" in errors[0] and "database or disk is full" in errors[0], p.stderr
    assert "Traceback" not in p.stderr
    study = local_study(app, "cut")
    assert len(finished(study)) == 1 and all(t.state.name == "COMPLETE" for t in finished(study))
    again = run_app(app, *args)
    assert again.returncode == 0, again.stderr
    study = local_study(app, "cut")
    assert len(finished(study)) == 4 and all(t.state.name == "COMPLETE" for t in finished(study))
    _, children = parent_and_children(app, "cut")
    assert not [r for r in children if r.info.status == "RUNNING"]


def test_several_objectives_are_named_objective_0_1_by_default(app: Path) -> None:
    p = run_app(app, "x=interval(-2.0, 2.0)", "+pair=true", "hydra.sweeper.n_trials=3",
                "hydra.sweeper.direction=[minimize,maximize]", "hydra.sweeper.study_name=two")
    assert p.returncode == 0, p.stderr[-3000:]
    study = local_study(app, "two")
    assert study.metric_names == ["objective_0", "objective_1"]
    _, children = parent_and_children(app, "two")
    for run in children:
        assert run.data.metrics["objective_1"] == pytest.approx(-run.data.metrics["objective_0"])
    results = yaml.safe_load((app / "sweep" / "optimization_results.yaml").read_text())
    assert len(results["solutions"]) >= 1 and all(len(s["values"]) == 2 for s in results["solutions"])


def test_a_sweep_run_from_python_runs_its_trials_in_this_process(hydra_sweep_runner: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Hydra's test runner sweeps in this process (no command line to run again): ``n_jobs`` workers
    cannot be started, which one line says, and every trial runs here."""
    monkeypatch.chdir(tmp_path)
    sweep = hydra_sweep_runner(calling_file=None, calling_module="hydra.test_utils.a_module", config_path="configs",
                               config_name="compose.yaml", task_function=None,
                               overrides=["hydra/sweeper=imbsweep_optuna", "hydra.sweeper.n_trials=4",
                                          "hydra.sweeper.n_jobs=3", "hydra.sweeper.study_name=inproc"])
    with caplog.at_level("WARNING"), sweep:
        assert sweep.returns is None
    study = local_study(tmp_path, "inproc")
    assert len(finished(study)) == 4 and all(t.value == 100 for t in study.trials)  # the runner's task returns 100
    assert "no worker processes are started" in caplog.text


def test_each_trial_has_a_run_of_its_own_and_a_failed_creation_ends_none(tmp_path: Path) -> None:
    """A worker runs many trials in one process: each gets its own ``UserRun``. When the run of
    a trial cannot be created, nothing is ended (a shared record once kept the previous trial's
    run id, and the trial's clean-up ended that finished run FAILED)."""
    from types import SimpleNamespace

    from imbsweep._client import make_client
    from imbsweep.sweep._userrun import UserRun

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = make_client(uri)
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "artifacts"))
    hc = SimpleNamespace(job=SimpleNamespace(name="app"), runtime=SimpleNamespace(choices={}, cwd=str(tmp_path)))
    ctx = {"study": "s", "number": 0, "experiment_id": experiment, "parent_run_id": "p"}
    first, second = UserRun(client, uri), UserRun(client, uri)
    assert first is not second
    first.create(hc, ctx)
    first.end([("objective", "maximize")], [0.5], "FINISHED", "complete", "", None)
    with pytest.raises(Exception):  # noqa: B017 - the store refuses the run: no such experiment
        second.create(hc, {**ctx, "number": 1, "experiment_id": "999"})
    assert second.run_id == ""  # (so the trial's clean-up ends no run)
    assert client.get_run(first.run_id).info.status == "FINISHED"
