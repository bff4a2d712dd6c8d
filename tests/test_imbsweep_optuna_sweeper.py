"""The sweeper plugin (``src/hydra_plugins/imbsweep_optuna_sweeper``) as Hydra finds it, the way
Hydra's own plugins test theirs: discovered among the installed Sweepers, its config registered
as ``hydra/sweeper: imbsweep_optuna`` and naming the class, and light to import (Hydra imports
every installed plugin whenever any Hydra app starts)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from typing import Any

import pytest
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.utils import instantiate

from hydra_plugins.imbsweep_optuna_sweeper.config import SAMPLER_CONFIGS, ImbsweepOptunaSweeperConf
from hydra_plugins.imbsweep_optuna_sweeper.optuna_sweeper import ImbsweepOptunaSweeper
from tests.helpers.cli import cli_env


def test_discovery() -> None:
    # this plugin can be discovered through the plugins subsystem when Hydra looks for Sweepers
    assert ImbsweepOptunaSweeper.__name__ in [x.__name__ for x in Plugins.instance().discover(Sweeper)]


def _sweeper_node(*overrides: str) -> Any:
    """``hydra.sweeper`` as Hydra composes it for an app with no config of its own."""
    from hydra import compose, initialize

    with initialize(version_base="1.3", config_path=None):
        cfg = compose(overrides=["hydra/sweeper=imbsweep_optuna", *overrides], return_hydra_config=True)
    return cfg.hydra.sweeper


def test_the_registered_config_builds_the_sweeper() -> None:
    stored = ConfigStore.instance().load("hydra/sweeper/imbsweep_optuna.yaml")
    assert stored.provider == "imbsweep_optuna_sweeper"
    assert stored.node["_target_"] == f"{ImbsweepOptunaSweeper.__module__}.{ImbsweepOptunaSweeper.__qualname__}"
    sweeper = instantiate(_sweeper_node())
    conf = sweeper.conf
    # by name: Hydra's plugin scan imports the module anew, so its class is not the one imported above
    assert isinstance(sweeper, Sweeper) and type(sweeper).__qualname__ == ImbsweepOptunaSweeper.__qualname__
    assert conf["max_failure_rate"] == ImbsweepOptunaSweeperConf.max_failure_rate == 0.5
    # the sampler arrives as its settings (the sweeper seeds it per worker), TPE by default
    assert conf["sampler"]["_target_"] == "optuna.samplers.TPESampler" and conf["sampler"]["seed"] == 0


@pytest.mark.parametrize("name", sorted(set(SAMPLER_CONFIGS) - {"motpe"}))
def test_every_sampler_option_loads_as_the_official_plugin_names_it(name: str) -> None:
    """``hydra/sweeper/sampler=<name>``, its settings set on the command line, builds that Optuna
    sampler with them: the seed reaches it (the same seed draws the same first points, another
    seed others), and a setting of the wrong type is refused by the typed config."""
    import optuna
    from hydra.errors import ConfigCompositionException

    from imbsweep.sweep import SearchSpace, make_sampler

    space = SearchSpace.build({"x": "interval(0.0, 1.0)" if name != "grid" else "choice(0.1, 0.2, 0.3, 0.4)",
                               "y": "choice(a, b, c, d)"}, None)

    def first_points(seed: int) -> list[tuple[float, str]]:
        node = _sweeper_node(f"hydra/sweeper/sampler={name}", f"hydra.sweeper.sampler.seed={seed}").sampler
        assert node._target_ == SAMPLER_CONFIGS[name]._target_
        sampler = make_sampler(dict(node), space)
        assert isinstance(sampler, getattr(optuna.samplers, node._target_.rsplit(".", 1)[1]))
        study = optuna.create_study(sampler=sampler)
        points = []
        for _ in range(3):
            trial = study.ask()
            points.append((trial.suggest_float("x", 0.0, 1.0) if name != "grid" else
                           trial.suggest_categorical("x", [0.1, 0.2, 0.3, 0.4]),
                           trial.suggest_categorical("y", ["a", "b", "c", "d"])))
            study.tell(trial, 0.0)
        return points

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (experimental samplers, independent sampling)
        assert first_points(3) == first_points(3)
        assert first_points(3) != first_points(4)
    with pytest.raises(ConfigCompositionException):
        _sweeper_node(f"hydra/sweeper/sampler={name}", "hydra.sweeper.sampler.seed=abc")



def test_discovering_the_plugin_imports_nothing_heavy() -> None:
    """In a fresh interpreter (this one has imported everything already): Hydra's plugin scan
    loads the plugin's modules, and the sweep code, torch, MLflow and Optuna only when a sweep runs."""
    code = ("import sys\n"
            "from hydra.core.plugins import Plugins\n"
            "from hydra.plugins.sweeper import Sweeper\n"
            "names = [x.__name__ for x in Plugins.instance().discover(Sweeper)]\n"
            "print('ImbsweepOptunaSweeper' in names, *sorted(m for m in ('imbsweep', 'torch', 'mlflow', 'optuna')\n"
            "                                                  if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["True"]
