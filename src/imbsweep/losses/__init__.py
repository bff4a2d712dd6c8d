"""Imbalance losses, each a class a ``loss`` config names by ``_target_``.

A loss config (``conf/loss/*.yaml``) is ``_target_`` plus the constructor's arguments, as
every config group is; the training class counts and the number of epochs are passed at build
time. :data:`LOSSES` maps each loss's short name (``ce``, ``focal``, …: its ``name``, the
trick label's first word) to its class. Every loss is an ``nn.Module`` over logits
``[N, C]`` and integer targets ``[N]``, usable in a training loop of your own:

    >>> import torch
    >>> loss_fn = build_loss({"_target_": "imbsweep.losses.Focal", "gamma": 2.0, "class_weights": "inverse"},
    ...                      [90, 10])
    >>> float(loss_fn(torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]))) > 0
    True

Deferred re-weighting (DRW, Cao et al. 2019): ``reweight_from_epoch=E`` (or
``reweight_from_fraction``, see :func:`drw_epoch`) keeps the class weights off before epoch
``E``; call ``loss_fn.set_epoch(epoch)`` at the start of every epoch (1-based).
``LDAM`` needs its normalised classifier: put ``loss_fn.make_head(d, C)`` in place of the
model's last linear layer.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ._base import ImbalanceLoss, drw_epoch
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
    """Build the loss a ``loss`` config node describes: ``_target_`` (a class: one of ours or your
    own) plus its arguments (imbsweep's config groups), a name of :data:`LOSSES` as ``name`` plus
    its arguments (``{"name": "focal", "gamma": 2.0}``: an app's own config), or just a name
    (``"focal"``).

    The training class counts and the number of epochs are given here, where the target takes
    them: ``reweight_from_fraction`` (deferred re-weighting relative to the run's length)
    becomes ``reweight_from_epoch = floor(fraction * epochs) + 1``: 0.75 of 40 epochs switches
    the weights on at epoch 31, and the same setting stays valid for ``trainer.epochs=15``.

    Args:
        loss_cfg: a config node or plain dict (``{"_target_": "imbsweep.losses.LDAM", "max_m":
            0.5}``), or a name (``"focal"``).
        class_counts: training examples per class ``[C]`` (an array, tensor or list).
        epochs: the training's number of epochs; needed by ``reweight_from_fraction`` only.

    Returns:
        The loss, an ``nn.Module``; move it to the model's device with ``.to(device)``.

    Raises:
        ConfigError: an unknown name, an argument the loss does not take, or a bad value.
    """
    from ..building import by_name, instantiate_checked

    loss_cfg = by_name(loss_cfg, "loss", {name: LOSSES[name] for name in sorted(LOSSES)})
    loss = instantiate_checked(loss_cfg, "loss", offer={"class_counts": class_counts, "epochs": epochs})
    if not isinstance(loss, ImbalanceLoss):
        raise ConfigError("loss._target_", type(loss).__qualname__, "must be a subclass of "
                          "imbsweep.losses.ImbalanceLoss (a loss of your own: subclass it, docs/library.md)")
    return loss

