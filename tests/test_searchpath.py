"""The user's own configs (``hydra_plugins/imbsweep_searchpath``): ``./conf/`` and ``./sweeps/``
of the working folder come ahead of the configs imbsweep ships, for imbsweep's app only;
``$IMBSWEEP_CONF`` names another folder, where ``export`` writes and ``+best=`` finds it. The
same from an installed wheel, through the real command line: tests/test_wheel.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir, initialize_config_module
from omegaconf import DictConfig

from hydra_plugins.imbsweep_searchpath import searchpath
from hydra_plugins.imbsweep_searchpath.searchpath import CONF_PROVIDER, SWEEPS_PROVIDER
from imbsweep._paths import CONFIG_MODULE, PROJECT_ROOT, user_conf_dir, user_folders
from imbsweep.export import reproduce_command

MINE = """# @package _global_
defaults:
  - override /hydra/sweeper: imbsweep_optuna
  - override /model: mine
hydra:
  sweeper:
    study_name: {name}
"""
MODEL = "_target_: imbsweep.models.MLP\nhidden_sizes: {sizes}\n"


def _compose(*overrides: str) -> DictConfig:
    """imbsweep's config with its ``hydra`` node, as ``imbsweep run OVERRIDES`` composes it."""
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def _providers(cfg: DictConfig) -> list[str]:
    return [s.provider for s in cfg.hydra.runtime.config_sources]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, no ``$IMBSWEEP_CONF``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMBSWEEP_CONF", raising=False)
    return tmp_path


def test_the_users_conf_and_sweeps_come_ahead_of_imbsweeps(folder: Path) -> None:
    assert searchpath.CONFIG_MODULE == CONFIG_MODULE  # (the plugin spells it: the scan imports no imbsweep)
    assert _providers(_compose()) == ["hydra", "main", "schema"]  # nothing of the user's: nothing added
    (folder / "conf" / "model").mkdir(parents=True)
    (folder / "conf" / "model" / "mine.yaml").write_text(MODEL.format(sizes=[8]))
    (folder / "conf" / "model" / "mlp.yaml").write_text(MODEL.format(sizes=[7]))
    (folder / "sweeps").mkdir()
    (folder / "sweeps" / "mine.yaml").write_text(MINE.format(name="mine"))
    cfg = _compose("sweep=mine")
    sources = [(s.provider, f"{s.schema}://{s.path}") for s in cfg.hydra.runtime.config_sources]
    assert sources == [("hydra", "pkg://hydra.conf"), (CONF_PROVIDER, f"file://{folder / 'conf'}"),
                       (SWEEPS_PROVIDER, f"imbsweep-sweeps://{folder / 'sweeps'}"),
                       ("main", "pkg://imbsweep.conf"), ("schema", "structured://")]
    # the user's sweep, which picks the user's model option
    assert cfg.hydra.sweeper.study_name == "mine" and cfg.hydra.runtime.choices["model"] == "mine"
    assert cfg.model.hidden_sizes == [8]
    assert _compose("model=mlp").model.hidden_sizes == [7]  # an option of the user's replaces ours
    assert _compose("model=logreg").model._target_ == "imbsweep.models.LogisticRegression"  # ours remain
    # conf/sweep/ of the user's folder is the group sweep too; imbsweep's sweeps are still there
    (folder / "conf" / "sweep").mkdir()
    (folder / "conf" / "sweep" / "other.yaml").write_text(MINE.format(name="other"))
    assert _compose("sweep=other").hydra.sweeper.study_name == "other"
    assert _compose("sweep=smoke").hydra.sweeper.study_name == "smoke"
    # export's default folder is ./conf/best, which +best= finds with no flag
    assert user_conf_dir() == folder / "conf"
    assert reproduce_command(folder / "conf" / "best", "mine") == "imbsweep run +best=mine"


def test_imbsweep_conf_names_the_users_config_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (folder / "conf" / "model").mkdir(parents=True)
    (folder / "conf" / "model" / "mlp.yaml").write_text(MODEL.format(sizes=[7]))
    elsewhere = folder / "elsewhere"
    (elsewhere / "model").mkdir(parents=True)
    (elsewhere / "model" / "mlp.yaml").write_text(MODEL.format(sizes=[5]))
    monkeypatch.setenv("IMBSWEEP_CONF", str(elsewhere))
    assert _compose("model=mlp").model.hidden_sizes == [5]  # instead of ./conf, not beside it
    assert user_conf_dir() == elsewhere
    assert reproduce_command(elsewhere / "best", "x") == "imbsweep run +best=x"
    assert reproduce_command(folder / "conf" / "best", "x").startswith("imbsweep run --config-dir ")


def test_another_hydra_apps_search_path_is_left_alone(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (folder / "conf" / "sweep").mkdir(parents=True)
    (folder / "sweeps").mkdir()
    app = folder / "app"
    app.mkdir()
    (app / "config.yaml").write_text("x: 1\n")
    with initialize_config_dir(str(app), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
    assert _providers(cfg) == ["hydra", "main", "schema"]
    # in the repository, ./sweeps links to imbsweep's own sweeps: not a folder of the user's
    monkeypatch.chdir(PROJECT_ROOT)
    assert (PROJECT_ROOT / "sweeps").is_dir()
    assert user_folders()[1] is None


def test_a_yaml_error_in_a_users_sweep_file_names_the_file(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from imbsweep.cli import main

    (folder / "sweeps").mkdir()
    (folder / "sweeps" / "bad.yaml").write_text("hydra:\n  sweeper: [\n")
    assert main(["run", "sweep=bad"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"imbsweep: error: {folder / 'sweeps' / 'bad.yaml'}, line 3") and "not valid YAML" in err
