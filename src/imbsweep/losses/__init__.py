"""Imbalance losses behind a registry keyed by ``loss.name``.

A loss config (``conf/loss/*.yaml``) is ``name`` plus the constructor's arguments; the
training class counts are passed at build time. Every loss is an ``nn.Module`` over logits
``[N, C]`` and integer targets ``[N]``, usable in a training loop of your own:

    >>> import torch
    >>> loss_fn = build_loss({"name": "focal", "gamma": 2.0, "class_weights": "inverse"}, [90, 10])
    >>> float(loss_fn(torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]))) > 0
    True

Deferred re-weighting (DRW, Cao et al. 2019): ``reweight_from_epoch=E`` (or
``reweight_from_fraction``, see :func:`drw_epoch`) keeps the class weights off before epoch
``E``; call ``loss_fn.set_epoch(epoch)`` at the start of every epoch (1-based).
``LDAM`` needs its normalised classifier: put ``loss_fn.make_head(d, C)`` in place of the
model's last linear layer.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import ConfigError
from ._base import ImbalanceLoss
from ._ce import BalancedSoftmax, CrossEntropy, LogitAdjusted
from ._focal import ClassBalanced, Focal, focal_loss
from ._ldam import LDAM, ldam_margins
from ._weights import SCHEMES, class_weights

LOSSES: dict[str, type[ImbalanceLoss]] = {
    cls.name: cls for cls in (CrossEntropy, Focal, ClassBalanced, LDAM, LogitAdjusted, BalancedSoftmax)}

__all__ = ["LDAM", "LOSSES", "SCHEMES", "BalancedSoftmax", "ClassBalanced", "CrossEntropy", "Focal",
           "ImbalanceLoss", "LogitAdjusted", "build_loss", "class_weights", "drw_epoch", "focal_loss",
           "ldam_margins"]


def build_loss(loss_cfg: Any, class_counts: Any, epochs: int | None = None) -> ImbalanceLoss:
    """Build the loss a ``loss`` config node names.

    ``reweight_from_fraction`` (deferred re-weighting relative to the run's length) becomes
    ``reweight_from_epoch = floor(fraction * epochs) + 1``: 0.75 of 40 epochs switches the
    weights on at epoch 31, and the same setting stays valid for ``trainer.epochs=15``.

    Args:
        loss_cfg: a config node or plain dict, ``name`` (one of :data:`LOSSES`) plus the loss's
            arguments (``{"name": "ldam", "max_m": 0.5}``), or just a name (``"focal"``).
        class_counts: training examples per class ``[C]`` (an array, tensor or list).
        epochs: the training's number of epochs; needed by ``reweight_from_fraction`` only.

    Returns:
        The loss, an ``nn.Module``; move it to the model's device with ``.to(device)``.

    Raises:
        ConfigError: unknown ``loss.name`` or an argument the loss does not take.
    """
    cfg = {"name": loss_cfg} if isinstance(loss_cfg, str) else dict(loss_cfg)
    name = cfg.pop("name", None)
    fraction = cfg.pop("reweight_from_fraction", None)
    if fraction is not None:
        cfg["reweight_from_epoch"] = drw_epoch(fraction, epochs, cfg.get("reweight_from_epoch"))
    if name not in LOSSES:
        raise ConfigError("loss.name", name, f"must be one of {', '.join(sorted(LOSSES))}")
    cls = LOSSES[name]
    params = [p for p in inspect.signature(cls).parameters if p != "class_counts"]
    for k, v in cfg.items():
        if k not in params:
            raise ConfigError(f"loss.{k}", v, f"not an argument of loss {name!r}; allowed: "
                                              f"{', '.join(params)}")
    return cls(class_counts=class_counts, **cfg)


def drw_epoch(fraction: Any, epochs: int | None, from_epoch: Any = None) -> int:
    """The first epoch with class weights on for ``loss.reweight_from_fraction``:
    ``floor(fraction * epochs) + 1``.

    Args:
        fraction: the share of the epochs trained without class weights, in [0, 1).
        epochs: the training's number of epochs.
        from_epoch: ``reweight_from_epoch`` as also given (must be None: one or the other).

    Example:
        >>> drw_epoch(0.75, 40)
        31

    Raises:
        ConfigError: a fraction outside [0, 1), or set together with ``reweight_from_epoch``.
    """
    key = "loss.reweight_from_fraction"
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction < 1:
        raise ConfigError(key, fraction, "must be a number in [0, 1) (the share of trainer.epochs "
                                         "trained without class weights) or null")
    if from_epoch is not None:
        raise ConfigError(key, fraction, f"cannot be set together with loss.reweight_from_epoch={from_epoch}; "
                                         "set one of them to null")
    if epochs is None:
        raise ConfigError(key, fraction, "needs trainer.epochs to be known")
    return int(fraction * epochs) + 1
