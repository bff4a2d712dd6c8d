"""``hydra.sweeper``'s settings object (``imbsweep.sweep._settings``): one place for the defaults."""

from __future__ import annotations

from dataclasses import fields

from hydra_plugins.imbsweep_optuna_sweeper.config import ImbsweepOptunaSweeperConf
from imbsweep.sweep._settings import Settings


def test_settings_take_every_key_and_default_of_the_plugin_config() -> None:
    """What the sweeper reads is what the plugin's dataclass declares, defaults included."""
    declared = {f.name for f in fields(ImbsweepOptunaSweeperConf)} - {"_target_"}
    assert declared == {f.name for f in fields(Settings)} - {"raw"}
    s = Settings.of({})
    assert (s.n_jobs, s.max_failure_rate, s.heartbeat_interval, s.sampler, s.pruner) == \
        (1, 0.5, 60, {"name": "tpe", "seed": 0}, {"name": "none"})
    assert Settings.of({"n_jobs": 3, "sampler": None}).n_jobs == 3 and Settings.of({"sampler": None}).sampler == {}
