"""The real config (``imbsweep/conf/config.yaml``, with the working folder's own configs ahead
of it as ``imbsweep run`` has them), composed with Hydra's compose API."""

from __future__ import annotations

from typing import Protocol

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from imbsweep._paths import CONFIG_MODULE

#: small and fast: digits (bundled with scikit-learn), an MLP, 2 epochs
TINY = ("data=digits_lt", "model=mlp", "model.hidden_sizes=[32]", "trainer.epochs=2",
        "trainer.batch_size=64")


def compose_config(*overrides: str) -> DictConfig:
    """imbsweep's ``config.yaml`` composed with ``overrides``, as ``imbsweep run OVERRIDES`` would."""
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose("config", overrides=list(overrides))


class MakeCfg(Protocol):
    """The ``make_cfg`` fixture: the composed config, shrunk to :data:`TINY` unless ``tiny``
    is false, its state under the test's ``tmp_path``."""

    def __call__(self, *overrides: str, tiny: bool = True) -> DictConfig: ...
