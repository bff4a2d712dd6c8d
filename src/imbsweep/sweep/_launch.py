"""Launching a sweep's jobs: Hydra's configured launcher, one job at a time
(:class:`LauncherJobs`), or, for imbsweep's own app on the basic launcher without callbacks,
the same work with its composition cached (``_jobs.CachedJobs``). A job the launcher lost (submitit:
killed, timed out, its node gone) is :class:`JobLost`, any other launcher error :class:`LaunchFailed`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..errors import ImbsweepError, one_line
from ._jobs import CachedJobs


class JobLost(Exception):
    """The launcher's job ended without a result (submitit's ``UncompletedJobError``: the job
    was killed, cancelled, timed out or lost its node): not the trial's doing."""


class LaunchFailed(ImbsweepError):
    """The launcher could not run a job (an ``sbatch`` error, a job that failed before the task
    ran): the sweep stops, its trial re-queued; the same command resumes once it is fixed."""

    exit_code = 1


class LauncherJobs:
    """The configured Hydra launcher, one job at a time."""

    def __init__(self, launcher: Any, choice: str | None = None) -> None:
        self.launcher = launcher
        self.name = f"hydra/launcher={choice}" if choice else launcher_name(launcher)

    def run(self, overrides: Sequence[str], idx: int) -> Any:
        try:
            (ret,) = self.launcher.launch([list(overrides)], initial_job_idx=idx)
        except Exception as exc:
            from hydra.errors import HydraException

            if isinstance(exc, HydraException):  # the job's config (as on Hydra's basic launcher)
                raise
            if _lost(exc):
                raise JobLost(one_line(exc, 500)) from exc
            raise LaunchFailed(f"the launcher ({self.name}) could not run job #{idx}: {_cause(exc)}; "
                               "its trial is re-queued: fix it, then run the same command") from exc
        return ret


def _lost(exc: Exception) -> bool:
    """Whether submitit says the job ended without a result (not a failure of its code)."""
    if not type(exc).__module__.startswith("submitit"):
        return False
    from submitit.core.utils import FailedJobError, UncompletedJobError

    return isinstance(exc, UncompletedJobError) and not isinstance(exc, FailedJobError)


def _cause(exc: Exception) -> str:
    """What went wrong, on one line: for submitit's ``FailedJobError`` (the job's Python failed
    before the task, or outside it) the traceback's last line and the job's log file, which hold
    more than the wrapper's first words."""
    text = str(exc)
    if "failed during processing with trace:" in text:
        parts = text.split("-" * 22)
        lines = [ln.strip() for ln in (parts[1] if len(parts) > 2 else text).splitlines() if ln.strip()]
        logs = [ln.strip()[2:] for ln in parts[-1].splitlines() if ln.strip().startswith("- ")]
        return " ".join(f"{lines[-1] if lines else type(exc).__name__}"
                        f"{f' (the job log: {logs[0]})' if logs else ''}".split())[:500]
    return one_line(exc, 500)


def launcher_name(launcher: Any) -> str:
    """The launcher's class path (by name: Hydra's plugin scan may import its module twice)."""
    return f"{type(launcher).__module__}.{type(launcher).__qualname__}"


#: launchers whose jobs run on other machines (SLURM's nodes, a Ray cluster on AWS)
_ELSEWHERE = ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
              "hydra_plugins.hydra_ray_launcher.ray_aws_launcher.RayAWSLauncher")


def runs_here(launcher: Any) -> bool:
    """Whether the launcher runs jobs on this machine (Hydra's basic launcher, joblib's,
    submitit's local executor), so that the sweep shares this machine's cores and GPUs among
    its workers; a launcher that places jobs elsewhere gives them theirs (submitit's SLURM
    launcher: ``cpus_per_task``, ``gpus_per_node``)."""
    return launcher_name(launcher) not in _ELSEWHERE


def make_jobs(launcher: Any, config: DictConfig, own: bool = True) -> LauncherJobs | CachedJobs:
    """:class:`CachedJobs` for imbsweep's own app (``own``) on Hydra's basic launcher without
    callbacks, else the launcher."""
    choice = (OmegaConf.select(config, "hydra.runtime.choices", default={}) or {}).get("hydra/launcher")
    # Hydra's basic launcher: the config group's option (and its class's name: not a plugin's of that name)
    basic = choice == "basic" and type(launcher).__name__ == "BasicLauncher"
    if own and basic and not OmegaConf.select(config, "hydra.callbacks") and getattr(launcher, "hydra_context", None):
        return CachedJobs(launcher, config)
    return LauncherJobs(launcher, choice)
