"""The Sweeper Hydra instantiates; it hands the work to ``imbsweep.sweep``."""

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

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    def sweep(self, arguments: list[str]) -> Any:
        from imbsweep.sweep import run_sweep

        assert self.config is not None
        loader = self.hydra_context.config_loader if self.hydra_context is not None else None
        return run_sweep(self.conf, self.config, self.launcher, arguments, loader)
