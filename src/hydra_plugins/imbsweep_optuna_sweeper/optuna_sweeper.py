"""The Sweeper Hydra instantiates; it hands the work to ``imbsweep.sweep``.

As the official Optuna sweeper does, it sweeps any Hydra app: its jobs are launched through
the configured Hydra launcher (``launcher.launch``), whose task function is the app's own,
wrapped so that a job knows its trial (``imbsweep.sweep._usertask.TrialTask``)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from .config import ImbsweepOptunaSweeperConf  # noqa: F401 - registers the config


class ImbsweepOptunaSweeper(Sweeper):
    def __init__(self, **conf: Any) -> None:
        self.conf = conf
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        from imbsweep.sweep._usertask import TrialTask

        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=TrialTask(task_function))

    def sweep(self, arguments: list[str]) -> Any:
        """The sweep. In any app but imbsweep's own command (which prints its errors itself), a
        bad setting or an unusable store ends the app with one line and exit code 2 (1 for a
        fault) instead of a traceback; ``HYDRA_FULL_ERROR=1`` shows the traceback."""
        import os

        from imbsweep.errors import ImbsweepError, say
        from imbsweep.sweep import run_sweep

        assert self.config is not None
        loader = self.hydra_context.config_loader if self.hydra_context is not None else None
        try:
            return run_sweep(self.conf, self.config, self.launcher, arguments, loader, self.task_function)
        except ImbsweepError as exc:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":  # (imbsweep's command sets it: it prints the line)
                raise
            say(f"error: {exc}")
            raise SystemExit(exc.exit_code) from None
