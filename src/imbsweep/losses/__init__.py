"""Imbalance losses behind a registry keyed by ``loss.name``.

A loss config (``conf/loss/*.yaml``) is ``name`` plus the constructor's arguments; the
training class counts are passed at build time.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from ..errors import ConfigError
from ._base import ImbalanceLoss
from ._ce import BalancedSoftmax, CrossEntropy, LogitAdjusted
from ._focal import ClassBalanced, Focal, focal_loss
from ._ldam import LDAM, ldam_margins
from ._weights import SCHEMES, class_weights

LOSSES: dict[str, type[ImbalanceLoss]] = {
    cls.name: cls for cls in (CrossEntropy, Focal, ClassBalanced, LDAM, LogitAdjusted, BalancedSoftmax)}

__all__ = ["LDAM", "LOSSES", "SCHEMES", "BalancedSoftmax", "ClassBalanced", "CrossEntropy", "Focal",
           "ImbalanceLoss", "LogitAdjusted", "build_loss", "class_weights", "focal_loss", "ldam_margins"]


def build_loss(loss_cfg: Any, class_counts: np.ndarray) -> ImbalanceLoss:
    """Build the loss a ``loss`` config node names.

    Raises:
        ConfigError: unknown ``loss.name`` or an argument the loss does not take.
    """
    cfg = dict(loss_cfg)
    name = cfg.pop("name", None)
    if name not in LOSSES:
        raise ConfigError("loss.name", name, f"must be one of {', '.join(sorted(LOSSES))}")
    cls = LOSSES[name]
    params = [p for p in inspect.signature(cls).parameters if p != "class_counts"]
    for k, v in cfg.items():
        if k not in params:
            raise ConfigError(f"loss.{k}", v, f"not an argument of loss {name!r}; allowed: "
                                              f"{', '.join(params)}")
    return cls(class_counts=class_counts, **cfg)
