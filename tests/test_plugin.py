"""The sweeper plugin as Hydra finds it (as Hydra's own plugins test themselves)."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper

from hydra_plugins.imbsweep_optuna_sweeper.config import ImbsweepOptunaSweeperConf
from hydra_plugins.imbsweep_optuna_sweeper.optuna_sweeper import ImbsweepOptunaSweeper
from imbsweep.sweep._settings import Settings


def test_hydra_discovers_the_sweeper() -> None:
    assert ImbsweepOptunaSweeper.__name__ in [x.__name__ for x in Plugins.instance().discover(Sweeper)]


def test_its_config_is_registered_as_hydra_sweeper_imbsweep_optuna() -> None:
    node = ConfigStore.instance().load("hydra/sweeper/imbsweep_optuna.yaml").node
    assert node["_target_"] == f"{ImbsweepOptunaSweeper.__module__}.{ImbsweepOptunaSweeper.__name__}"


def test_settings_take_every_key_and_default_of_the_plugin_config() -> None:
    """One place holds the defaults: what the sweeper reads is what the dataclass declares."""
    from dataclasses import fields

    declared = {f.name for f in fields(ImbsweepOptunaSweeperConf)} - {"_target_"}
    assert declared == {f.name for f in fields(Settings)} - {"raw"}
    s = Settings.of({})
    assert (s.n_jobs, s.max_failure_rate, s.heartbeat_interval, s.sampler, s.pruner) == \
        (1, 0.5, 60, {"name": "tpe", "seed": 0}, {"name": "none"})
    assert Settings.of({"n_jobs": 3, "sampler": None}).n_jobs == 3 and Settings.of({"sampler": None}).sampler == {}
