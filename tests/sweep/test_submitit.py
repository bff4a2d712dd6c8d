"""A sweep whose trials are jobs of submitit (hydra-submitit-launcher), as on a SLURM cluster:
the recipe of docs/slurm.md run on submitit's local executor with PostgreSQL on loopback (a job
killed as SLURM kills one; its trial re-queued; budgets exact), and the recipe's files checked
against the code and the stock tools they name."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from imbsweep._paths import CONFIG_MODULE, PACKAGE_CONF, PROJECT_ROOT
from tests.helpers.cli import cli_env
from tests.helpers.procs import free_port, start_server, stop_server, wait_for_http, wait_until
from tests.helpers.stores import check_one_to_one, finished

RECIPE = PROJECT_ROOT / "examples" / "slurm"
LAUNCHER = PACKAGE_CONF / "hydra" / "launcher" / "slurm.yaml"
N_TRIALS = 3  # + the killed one: 4 jobs, two rounds of the 2 sweep processes


def _start_recipe(cwd: Path, storage: str, tracking: str, *overrides: str) -> subprocess.Popen[str]:
    """examples/slurm/sweep.sh as the docs run it, on submitit's local executor."""
    env = {**cli_env(), "OPTUNA_STORAGE": storage, "MLFLOW_TRACKING_URI": tracking, "SWEEP": "smoke",
           "N_JOBS": "2", "LAUNCHER": "submitit_local", "IMBSWEEP": f"{sys.executable} -m imbsweep"}
    return subprocess.Popen(["bash", str(RECIPE / "sweep.sh"), f"hydra.sweeper.n_trials={N_TRIALS}",
                             "trainer.epochs=30", *overrides],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_a_running_trial(cwd: Path, proc: subprocess.Popen[str], storage: str) -> tuple[int, int]:
    """SIGKILL the submitit job of a trial whose MLflow run has begun, as SLURM ends a job that
    runs out of memory or whose node fails: its trial's process, then the job's (a local job's
    id is the process id of its controller, a child of the sweep process that asked for the
    trial, and the trial's process its child). Returns (job id, trial number)."""
    found: list[int] = []

    def running() -> bool:
        from sqlalchemy.pool import NullPool

        try:  # (no pool: an engine per poll kept its connection, and 0.1-s polls ran PostgreSQL out of them)
            study = optuna.load_study(study_name="smoke", storage=optuna.storages.RDBStorage(
                storage, engine_kwargs={"poolclass": NullPool}))
        except KeyError:  # (not created yet)
            return False
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if "mlflow_run_id" not in t.user_attrs:
                continue
            for folder in cwd.glob("multirun/*/*/.submitit/*"):
                try:
                    stat = Path(f"/proc/{folder.name}/stat").read_text()
                except (OSError, ValueError):
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == t.user_attrs["imbsweep:pid"]:
                    found[:] = [int(folder.name), t.number]
                    return True
        return False

    wait_until(proc, running, timeout=240, interval=0.1)
    job, number = found
    children = Path(f"/proc/{job}/task/{job}/children").read_text().split()
    for pid in [*map(int, children), job]:
        os.kill(pid, signal.SIGKILL)
    return job, number


def _check_study(storage: str, err: str) -> optuna.trial.FrozenTrial:
    """Exactly the budget finished, one trial lost and re-queued once; returns the lost one."""
    study = optuna.load_study(study_name="smoke", storage=storage)
    assert len(finished(study)) == N_TRIALS and all(t.state.name == "COMPLETE" for t in finished(study))
    (lost,) = [t for t in study.trials if t.user_attrs.get("imbsweep:requeued")]
    assert lost.state.name == "FAIL" and lost.user_attrs["fail_reason"].startswith("its job was lost: ")
    (twin,) = [t for t in study.trials if t.user_attrs.get("imbsweep:requeued_from") == lost.number]
    assert twin.params == lost.params and twin.user_attrs["imbsweep:lost_jobs"] == 1 and twin in finished(study)
    assert len(study.trials) == N_TRIALS + 1  # nothing else added, nothing run twice
    assert f"trial {lost.number} of smoke: its job was lost" in err
    return lost


def _recipe_with_a_killed_job(cwd: Path, storage: str, tracking: str) -> tuple[int, optuna.trial.FrozenTrial]:
    """The recipe run to its end with one job killed while its trial trains (checked by
    :func:`_check_study`); returns the killed job's id and its trial, the one re-queued."""
    proc = _start_recipe(cwd, storage, tracking)
    try:
        job, number = _kill_a_running_trial(cwd, proc, storage)
        out, err = proc.communicate(timeout=400)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    lost = _check_study(storage, out + err)
    assert lost.number == number
    return job, lost


def _check_record(client: object, study: optuna.Study, lost: optuna.trial.FrozenTrial) -> None:
    """One MLflow run per trial that ran; none left RUNNING; the lost trial's FAILED, if it began."""
    exp = client.get_experiment_by_name("smoke")  # type: ignore[attr-defined]
    runs = client.search_runs([exp.experiment_id])  # type: ignore[attr-defined]
    assert all(r.info.status != "RUNNING" for r in runs)
    children = sorted((r for r in runs if r.data.tags.get("imbsweep.role") != "parent"),
                      key=lambda r: int(r.data.tags["imbsweep.trial"]))
    of_lost = [r for r in children if r.data.tags["imbsweep.trial"] == str(lost.number)]
    assert of_lost and all(r.info.status == "FAILED" and "its job was lost" in r.data.tags["imbsweep.failure_reason"]
                           for r in of_lost)
    check_one_to_one(study, [r for r in children if r not in of_lost], skip={lost.number})


@pytest.mark.slow  # (make test-all; the recipe's launcher stays in make test: the job it cannot start)
def test_the_recipe_on_submitit_jobs_keeps_the_budget_and_requeues_a_killed_job(tmp_path: Path, pg_url: str) -> None:
    from mlflow import MlflowClient

    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    job, lost = _recipe_with_a_killed_job(tmp_path, pg_url, tracking)
    assert f"Job {job} " in lost.user_attrs["fail_reason"]
    study = optuna.load_study(study_name="smoke", storage=pg_url)
    _check_record(MlflowClient(tracking), study, lost)
    # each trial a job of its own, in the sweep's folder (submitit's files beside Hydra's)
    jobs = list(tmp_path.glob("multirun/*/*/.submitit/*/*_result.pkl"))
    assert len(jobs) == N_TRIALS  # the killed job left none
    # submitit's local executor runs its jobs on this machine: its cores are split between them
    # (its SLURM launcher places jobs elsewhere and gets no split: test_only_launchers_that_place_jobs_...)
    overrides = [yaml.safe_load(p.read_text()) for p in tmp_path.glob("multirun/*/*/*/.hydra/overrides.yaml")]
    assert len(overrides) >= N_TRIALS and all(any(x.startswith("trainer.num_threads=") for x in o) for o in overrides)


@pytest.mark.slow  # (~2 min on 2 cores: make test-all runs it)
def test_the_recipe_with_its_mlflow_server(tmp_path: Path, pg_url: str) -> None:
    """Both scripts of the recipe: the server answers under this host's name (MLflow's default
    allows only localhost and private IPs), the jobs record through it."""
    import socket

    from mlflow import MlflowClient

    port = free_port()
    env = {**cli_env(), "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/server.db", "PORT": str(port),
           "MLFLOW_ARTIFACTS": str(tmp_path / "artifacts"), "MLFLOW": str(Path(sys.executable).with_name("mlflow"))}
    server = start_server(["bash", str(RECIPE / "mlflow_server.sh")], cwd=tmp_path, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://{socket.gethostname()}:{port}"
    try:
        wait_for_http(f"{uri}/health", server, timeout=120, request_timeout=2)
        _, lost = _recipe_with_a_killed_job(tmp_path, pg_url, uri)
        client = MlflowClient(uri)
        _check_record(client, optuna.load_study(study_name="smoke", storage=pg_url), lost)
        assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # nothing recorded beside the server
    finally:
        stop_server(server)


def test_the_recipe_s_files_match_the_code_and_the_stock_tools() -> None:
    from hydra import compose, initialize_config_module
    from hydra.utils import get_class
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

    # the launcher file: every key one of the plugin's, composed onto its SLURM launcher
    written = yaml.safe_load(LAUNCHER.read_text())
    assert written.pop("defaults") == ["submitit_slurm", "_self_"]
    assert set(written) <= set(SlurmQueueConf.__dataclass_fields__)
    assert written["max_num_timeout"] == 0  # submitit does not resubmit: the sweep re-queues (Sweep._lost)
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose("config", ["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert get_class(launcher._target_).__name__ == "SlurmLauncher"
    assert all(launcher[k] == v for k, v in written.items() if "$" not in str(v))
    # the sweep script: the variables the code reads, a sweep file that exists, the launcher file
    script = (RECIPE / "sweep.sh").read_text()
    subprocess.run(["bash", "-n", str(RECIPE / "sweep.sh")], check=True)
    plugin = (PROJECT_ROOT / "src/hydra_plugins/imbsweep_optuna_sweeper/config.py").read_text()
    assert "oc.env:OPTUNA_STORAGE" in plugin and "${OPTUNA_STORAGE:?" in script
    assert "oc.env:MLFLOW_TRACKING_URI" in (PACKAGE_CONF / "tracking" / "local.yaml").read_text()
    assert "${MLFLOW_TRACKING_URI:?" in script
    sweep = re.search(r'SWEEP="\$\{SWEEP:-(\w+)\}"', script)
    assert sweep and (PACKAGE_CONF / "sweep" / f"{sweep[1]}.yaml").exists()
    assert f'LAUNCHER="${{LAUNCHER:-{LAUNCHER.stem}}}"' in script
    for line in re.findall(r"^#SBATCH (.*)$", script, re.M):
        assert re.fullmatch(r"--[a-z-]+=\S+", line), line
    # the server script: options `mlflow server` has, the tracking store it is told to use
    from mlflow.cli import server

    options = {o for p in server.params for o in p.opts}
    text = (RECIPE / "mlflow_server.sh").read_text()
    subprocess.run(["bash", "-n", str(RECIPE / "mlflow_server.sh")], check=True)
    used = set(re.findall(r"(--[a-z-]+)", text.split('server --host', 1)[1].replace("server ", "")))
    assert used and used | {"--host"} <= options, used - options
    # the docs walk through these files, with the package that provides the launcher installed by ours
    docs = (PROJECT_ROOT / "docs" / "slurm.md").read_text()
    for f in ("examples/slurm/sweep.sh", "examples/slurm/mlflow_server.sh", str(LAUNCHER.relative_to(PROJECT_ROOT))):
        assert f in docs
    deps = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert "hydra-submitit-launcher" in deps


def test_a_job_the_launcher_cannot_start_stops_the_sweep_in_one_line(tmp_path: Path, pg_url: str) -> None:
    """As sbatch rejecting a job (a wrong partition): one line naming the launcher, exit 1, the
    trial re-queued and nothing left RUNNING; the same command resumes once it is fixed."""
    from mlflow import MlflowClient

    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    proc = _start_recipe(tmp_path, pg_url, tracking, "hydra.launcher.submitit_folder=/proc/nowhere/%j")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    line = ("imbsweep: error: the launcher (hydra/launcher=submitit_local) could not run job #0: FileNotFoundError: "
            "[Errno 2] No such file or directory: '/proc/nowhere'; its trial is re-queued: fix it, then run the same "
            "command")
    assert "Traceback" not in err, err[-6000:]
    assert err.strip().splitlines()[-1] == line and "Traceback" not in err
    study = optuna.load_study(study_name="smoke", storage=pg_url)
    assert not finished(study) and all(t.state.name in ("FAIL", "WAITING") for t in study.trials)
    assert all(t.user_attrs.get("imbsweep:requeued") for t in study.trials if t.state.name == "FAIL")
    exp = MlflowClient(tracking).get_experiment_by_name("smoke")
    assert exp is not None
    assert all(r.info.status != "RUNNING" for r in MlflowClient(tracking).search_runs([exp.experiment_id]))


class _Raising:
    """A launcher whose every launch raises ``exc``."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def launch(self, job_overrides: object, initial_job_idx: int) -> object:
        raise self.exc


def test_a_lost_job_and_a_job_that_cannot_start_are_told_apart() -> None:
    from hydra.errors import ConfigCompositionException
    from submitit.core.utils import FailedJobError, UncompletedJobError

    from imbsweep.sweep._launch import JobLost, LauncherJobs, LaunchFailed

    lost = UncompletedJobError("Job 7 (task: 0) with path /x/7_0_result.pkl\nhas not produced any output (state: "
                               "NODE_FAIL)")
    with pytest.raises(JobLost, match=r"state: NODE_FAIL"):
        LauncherJobs(_Raising(lost), "slurm").run(["a=1"], 3)
    failed = FailedJobError("Job (task=0) failed during processing with trace:\n----------------------\n"
                            "Traceback (most recent call last):\n  File \"x.py\", line 1\nModuleNotFoundError: No "
                            "module named 'imbsweep'\n\n----------------------\nYou can check full logs with "
                            "'job.stderr(0)' and 'job.stdout(0)'or at paths:\n  - /s/7_0_log.err\n  - /s/7_0_log.out")
    with pytest.raises(LaunchFailed) as err:
        LauncherJobs(_Raising(failed), "slurm").run(["a=1"], 3)
    assert str(err.value) == ("the launcher (hydra/launcher=slurm) could not run job #3: ModuleNotFoundError: No "
                              "module named 'imbsweep' (the job log: /s/7_0_log.err); its trial is re-queued: fix "
                              "it, then run the same command")
    with pytest.raises(LaunchFailed, match=r"CalledProcessError: .*sbatch"):
        LauncherJobs(_Raising(subprocess.CalledProcessError(1, ["sbatch", "x"])), "slurm").run(["a=1"], 0)
    with pytest.raises(ConfigCompositionException):  # the job's config: as on Hydra's basic launcher
        LauncherJobs(_Raising(ConfigCompositionException("bad override")), "slurm").run(["a=1"], 0)


def test_only_launchers_that_place_jobs_elsewhere_get_no_core_or_gpu_split() -> None:
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher

    from imbsweep.sweep._launch import runs_here

    assert runs_here(BasicLauncher()) and runs_here(JoblibLauncher()) and runs_here(LocalLauncher())
    assert not runs_here(SlurmLauncher())


def test_the_same_parameters_lost_three_times_fail_for_good() -> None:
    from optuna.distributions import FloatDistribution

    from imbsweep.sweep._workers import MAX_LOST, requeue

    study = optuna.create_study()
    trial = study.ask({"x": FloatDistribution(0, 1)})
    frozen = study._storage.get_trial(trial._trial_id)
    assert requeue(study, frozen, "interrupted (Ctrl-C)")  # not a loss
    for loss in range(1, MAX_LOST + 1):
        twin = study.ask()  # the waiting twin, with the same parameters
        assert twin.suggest_float("x", 0, 1) == frozen.params["x"]
        assert twin.user_attrs.get("imbsweep:lost_jobs", 0) == loss - 1
        again = requeue(study, study._storage.get_trial(twin._trial_id), f"its job was lost: #{loss}", lost=True)
        assert again is (loss < MAX_LOST)
    last = study.trials[-1]
    assert last.state.name == "FAIL" and not last.user_attrs.get("imbsweep:requeued")  # counted
    assert last.user_attrs["fail_reason"] == "lost 3 times; last: its job was lost: #3"
    assert not [t for t in study.trials if t.state.name == "WAITING"]
