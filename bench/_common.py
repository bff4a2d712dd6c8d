"""Helpers shared by the benchmarks: compose the real config, describe the machine."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence

import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from imbsweep._paths import CONFIG_MODULE


def config(overrides: Sequence[str]) -> DictConfig:
    """The real config, composed as ``imbsweep run`` composes it."""
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"python {platform.python_version()}")
