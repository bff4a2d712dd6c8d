"""The sweep's cached job path (Hydra's composition once per set of group options, public
APIs only) against Hydra's own basic launcher: for every job, the same task config (values and
flags), the same Hydra config during the job, the same files in the job's ``.hydra`` folder, the
same logs, the same errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from imbsweep._paths import CONFIG_MODULE
from imbsweep.sweep._jobs import CachedJobs
from imbsweep.sweep._launch import LauncherJobs, make_jobs

CONTEXT = "+imbsweep_trial={study:s,number:3,trial_id:7,experiment_id:'2',parent_run_id:abc}"
JOBS = [  # group options (cached bases), values, a dict added, a cached base met again
    ["optimizer.lr=0.003", "loss.class_weights=none", CONTEXT],
    ["loss=focal", "loss.gamma=2.5", "trainer.batch_size=64", CONTEXT],
    ["resampling=sqrt", "model=logreg", "optimizer.lr=0.02", "loss.class_weights=inverse", CONTEXT],
    ["loss=focal", "loss.gamma=0.5", "optimizer.lr=1e-3", CONTEXT],
    ["optimizer.lr=0.01", "loss.label_smoothing=0.1", "loss.class_weights=effective_number",
     "+imbsweep_trial={study:'a b',number:0,trial_id:1,experiment_id:'2',parent_run_id:x}"],
    ["loss=ce", "eval.posthoc_grid=[0.0,1.0]", "data.imbalance_ratio=10", CONTEXT],
    ["loss=ldam", "resampling=sqrt", "optimizer=sgd", "loss.max_m=0.3", CONTEXT],  # files met before, anew
    ["resampling=sqrt", "model=logreg", "optimizer.lr=0.05", CONTEXT],
    ["loss=focal", "model=logreg", "loss.gamma=1.0", CONTEXT],
    ["~loss.class_weights", CONTEXT],
    ["loss=focal", "stage2=crt", "stage2.lr=0.01", CONTEXT],  # the tournament's other groups
    ["augment=mixup", "augment.alpha=0.5", "resampling=sqrt", CONTEXT],
]


def _hydra_config() -> DictConfig:
    """Hydra's config of the job that runs (a DictConfig, which Hydra annotates as its dataclass HydraConf)."""
    return HydraConfig.get()  # type: ignore[return-value]


@pytest.fixture
def hydra_launcher(tmp_path: Path,
                   request: pytest.FixtureRequest) -> Iterator[tuple[Any, DictConfig, list[dict[str, Any]]]]:
    """Hydra's basic launcher, set up as ``imbsweep sweep smoke`` sets it up (plus the hydra
    overrides of an indirect parameter), with a task function that records what it saw."""
    extra = list(getattr(request, "param", []))
    from hydra import initialize_config_module
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher
    from hydra.types import HydraContext

    seen: list[dict[str, Any]] = []

    def task(cfg: DictConfig) -> float:
        hc = _hydra_config()
        seen.append({"cfg": OmegaConf.to_container(cfg), "struct": OmegaConf.is_struct(cfg),
                     "readonly": OmegaConf.is_readonly(cfg), "loss_struct": OmegaConf.is_struct(cfg.loss),
                     "hydra": OmegaConf.to_container(hc), "hydra_readonly": OmegaConf.is_readonly(hc),
                     "cwd": os.getcwd(), "output_dir": hc.runtime.output_dir})
        return 0.5

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3", job_name="app"):
            hydra = GlobalHydra.instance().hydra
            assert hydra is not None
            cfg = hydra.compose_config("config", ["sweep=smoke", f"state_dir={tmp_path}/mlruns",
                                                  f"hydra.sweep.dir={tmp_path}/multirun", "hydra.sweeper.n_jobs=2",
                                                  *extra],
                                       run_mode=RunMode.MULTIRUN)
            launcher = BasicLauncher()
            context = HydraContext(config_loader=hydra.config_loader, callbacks=Callbacks(cfg))
            launcher.setup(hydra_context=context, task_function=task, config=cfg)
            HydraConfig.instance().set_config(cfg)
            yield launcher, cfg, seen
    finally:
        os.chdir(cwd)


def _files(cfg: DictConfig, num: int) -> dict[str, str]:
    folder = Path(str(cfg.hydra.sweep.dir)) / str(num) / ".hydra"
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


Fixture = tuple[Any, DictConfig, list[dict[str, Any]]]


def test_every_job_is_the_job_hydras_launcher_runs(hydra_launcher: Fixture) -> None:
    launcher, cfg, seen = hydra_launcher
    cached = make_jobs(launcher, cfg)
    assert isinstance(cached, CachedJobs)
    plain = LauncherJobs(launcher)
    for idx, job in enumerate(JOBS):
        overrides = ["sweep=smoke", *job]  # as the sweeper sends them: the command line's overrides first
        ret_h = plain.run(overrides, idx)
        files_h = _files(cfg, idx)
        ret_c = cached.run(overrides, idx)
        files_c = _files(cfg, idx)
        h, c = seen[-2], seen[-1]
        assert c == h, overrides
        assert c["cfg"]["imbsweep_trial"]["number"] in (0, 3)
        assert files_c == files_h, overrides
        assert set(files_c) == {"config.yaml", "hydra.yaml", "overrides.yaml"}
        assert (ret_c.status, ret_c._return_value, ret_c.overrides, ret_c.working_dir, ret_c.task_name) == \
            (ret_h.status, ret_h._return_value, ret_h.overrides, ret_h.working_dir, ret_h.task_name)
        assert OmegaConf.to_container(ret_c.cfg) == OmegaConf.to_container(ret_h.cfg)
    # Hydra composed once per set of group options (a job of values only: none of its own)
    groups = {tuple(o for o in ["sweep=smoke", *job] if o.split("=")[0] in ("sweep", *GROUPS)) for job in JOBS}
    assert sorted(cached.composed) == sorted(groups)
    # the sweeper's own Hydra config is back after each job
    assert OmegaConf.select(_hydra_config(), "runtime.output_dir") == \
        OmegaConf.select(cfg, "hydra.runtime.output_dir")


def test_a_failing_task_and_a_bad_override_fail_as_with_hydras_launcher(hydra_launcher: Fixture) -> None:
    from hydra.core.utils import JobStatus
    from hydra.errors import ConfigCompositionException

    launcher, cfg, _ = hydra_launcher

    def boom(_: DictConfig) -> float:
        raise ValueError("no good")

    launcher.task_function = boom
    cached, plain = make_jobs(launcher, cfg), LauncherJobs(launcher)
    for jobs in (plain, cached):
        ret = jobs.run(["sweep=smoke", "optimizer.lr=0.1", CONTEXT], 0)
        assert ret.status == JobStatus.FAILED and str(ret._return_value) == "no good"
    messages = []
    for jobs in (plain, cached):
        with pytest.raises(ConfigCompositionException) as err:
            jobs.run(["sweep=smoke", "optimizer.lrr=0.1", CONTEXT], 1)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "optimizer.lrr" in messages[0]
    for jobs in (plain, cached):  # a group option that does not exist
        with pytest.raises(ConfigCompositionException, match="nope"):
            jobs.run(["sweep=smoke", "loss=nope", CONTEXT], 1)


GROUPS = ["loss", "resampling", "model", "optimizer", "scheduler", "augment", "stage2", "data"]


def test_each_job_logs_to_its_own_file_and_the_sweep_to_none(hydra_launcher: Fixture,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The job's logging is put back as it was left instead of configured anew each time:
    every job's ``app.log`` holds that job's lines only, as with Hydra's launcher, and the
    console gets the same lines in the same formats (the sweep's in Hydra's, the job's in the
    job's)."""
    import logging
    import re

    launcher, cfg, _ = hydra_launcher

    def task(c: DictConfig) -> float:
        logging.getLogger("task").info("training job %s", c.imbsweep_trial.number)
        return 0.5

    launcher.task_function = task
    out: dict[str, tuple[list[str], str]] = {}
    for kind, jobs in (("hydra", LauncherJobs(launcher)), ("cached", make_jobs(launcher, cfg))):
        capsys.readouterr()
        for idx in range(3):
            jobs.run(["sweep=smoke", f"optimizer.lr=0.00{idx + 1}",
                      f"+imbsweep_trial={{study:s,number:{idx},trial_id:{idx},experiment_id:'2',parent_run_id:a}}"],
                     10 * (kind == "cached") + idx)
            logging.getLogger("imbsweep.sweep").info("between jobs %s", idx)
        logs = []
        for idx in range(3):
            text = (Path(str(cfg.hydra.sweep.dir)) / str(10 * (kind == "cached") + idx) / "app.log").read_text()
            logs.append(re.sub(r"^\[[^]]*\]", "", text, flags=re.M))
        console = re.sub(r"^\[[^]]*\]", "", capsys.readouterr().out, flags=re.M)
        out[kind] = (logs, re.sub(r"#\d+ :", "#N :", console))  # the job's number, 0.. or 10..
    assert out["cached"] == out["hydra"]
    assert out["cached"][0][1] == "[task][INFO] - training job 1\n"
    assert "[HYDRA] between jobs 2" in out["cached"][1] and "[task][INFO] - training job 2" in out["cached"][1]


@pytest.mark.parametrize("hydra_launcher", [["hydra.sweep.subdir=w1_${hydra.job.num}"]], indirect=True)
def test_a_workers_interpolated_hydra_override_composes_as_with_hydra(hydra_launcher: Fixture) -> None:
    """A worker process (``n_jobs``) runs with ``hydra.sweep.subdir=w1_${hydra.job.num}``: an
    interpolation that resolves only inside a job, taken unresolved as Hydra takes it."""
    launcher, cfg, seen = hydra_launcher
    cached = make_jobs(launcher, cfg)
    assert isinstance(cached, CachedJobs)
    for idx, job in enumerate([["loss=focal", CONTEXT], ["loss=ldam", "resampling=sqrt", CONTEXT]]):
        for jobs in (LauncherJobs(launcher), cached):
            jobs.run(["sweep=smoke", *job], idx)
        assert seen[-1] == seen[-2], job
        assert seen[-1]["output_dir"].endswith(f"w1_{idx}")


def test_a_data_option_that_picks_its_model_composes_as_with_hydra(hydra_launcher: Fixture) -> None:
    """``data=synthetic`` has a defaults list of its own (it overrides ``/model``): its base is
    Hydra's, and a model or a group option on top of it, and a plain data option after it, are
    what Hydra composes."""
    launcher, cfg, seen = hydra_launcher
    cached = make_jobs(launcher, cfg)
    assert isinstance(cached, CachedJobs)
    jobs = [["data=synthetic", CONTEXT], ["data=synthetic", "model=logreg", CONTEXT],
            ["data=synthetic", "resampling=sqrt", "loss=focal", CONTEXT], ["data=mnist1d_lt", "model=mlp", CONTEXT]]
    for idx, job in enumerate(jobs):
        for jobs_ in (LauncherJobs(launcher), cached):
            jobs_.run(["sweep=smoke", *job], idx)
        assert seen[-1] == seen[-2], job


def test_a_task_writing_into_its_config_changes_no_other_job(hydra_launcher: Fixture) -> None:
    """Each job's config is its own (a copy of the cached composition): what a task writes
    into it is gone for the next job, as with Hydra's launcher."""
    from hydra.core.utils import JobStatus
    from omegaconf import open_dict

    launcher, cfg, seen = hydra_launcher
    record = launcher.task_function

    def writes(c: DictConfig) -> float:
        with open_dict(c):
            c.data.imbalance_ratio = 5
        return 0.5

    cached = make_jobs(launcher, cfg)
    assert isinstance(cached, CachedJobs)
    launcher.task_function = cached.task_function = writes
    for jobs in (LauncherJobs(launcher), cached):
        ret = jobs.run(["sweep=smoke", "optimizer.lr=0.1", CONTEXT], 0)
        assert ret.status == JobStatus.COMPLETED
    launcher.task_function = cached.task_function = record
    for jobs in (LauncherJobs(launcher), cached):
        jobs.run(["sweep=smoke", "optimizer.lr=0.2", CONTEXT], 1)
    assert seen[-1] == seen[-2]
    assert seen[-1]["cfg"]["data"]["imbalance_ratio"] != 5
