"""``hydra.sweeper``'s settings object (``imbsweep.sweep._settings``): one place for the defaults."""

from __future__ import annotations

from dataclasses import fields

from hydra_plugins.imbsweep_optuna_sweeper.config import ImbsweepOptunaSweeperConf
from imbsweep.sweep._settings import Settings


def test_settings_take_every_key_and_default_of_the_plugin_config() -> None:
    """What the sweeper reads is what the plugin's dataclass declares, defaults included: the
    settings are that dataclass (one declaration of every key), with the settings as given."""
    assert issubclass(Settings, ImbsweepOptunaSweeperConf)
    assert {f.name for f in fields(ImbsweepOptunaSweeperConf)} == {f.name for f in fields(Settings)} - {"raw"}
    s = Settings.of({})
    assert (s.n_jobs, s.max_failure_rate, s.heartbeat_interval, s.pruner, s.baseline, s.direction) == \
        (1, 0.5, 60, {"name": "none"}, "auto", None)
    assert s.sampler["_target_"] == "optuna.samplers.TPESampler" and s.sampler["seed"] == 0 and s.sampler_name == "tpe"
    assert Settings.of({"n_jobs": 3, "sampler": None}).n_jobs == 3 and Settings.of({"sampler": None}).sampler == {}


def test_directions_and_objective_names_as_the_official_plugin_writes_them() -> None:
    import pytest

    from imbsweep.errors import ConfigError

    assert Settings.of({}).directions() is None
    assert Settings.of({"direction": "maximize"}).directions() == ["maximize"]
    assert Settings.of({"direction": ["minimize", "maximize"]}).directions() == ["minimize", "maximize"]
    for bad in ("upward", [], ["minimize", 3]):
        with pytest.raises(ConfigError, match="hydra.sweeper.direction"):
            Settings.of({"direction": bad}).directions()
    with pytest.raises(ConfigError, match="must name each of the 2 direction"):
        Settings.of({"direction": ["minimize", "minimize"], "objective_names": ["a"]}).validate()
    with pytest.raises(ConfigError, match="distinct"):
        Settings.of({"objective_names": ["a", "a"]}).validate()


def test_the_baseline_is_on_for_imbsweeps_app_and_tournaments_off_for_another_apps_plain_study() -> None:
    assert Settings.of({}).baseline_values(own_app=True) == {}
    assert Settings.of({}).baseline_values(own_app=False) is None
    assert Settings.of({"arms": {"a": {}}, "trials_per_arm": 1}).baseline_values(own_app=False) == {}
    assert Settings.of({"baseline": None}).baseline_values(own_app=True) is None
    assert Settings.of({"baseline": {"x": 1}}).baseline_values(own_app=False) == {"x": 1}
