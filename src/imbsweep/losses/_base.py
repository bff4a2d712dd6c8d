"""The loss interface every imbalance loss implements, with the class-weight machinery
(schemes and deferred re-weighting) they share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..constraints import NULL, Constraint, Interval, Options, checked
from ..errors import ConfigError
from ._weights import SCHEMES
from ._weights import class_weights as scheme_weights


@checked("loss")
class ImbalanceLoss(nn.Module):
    """A loss over logits ``[N, C]`` and integer targets ``[N]`` that knows the training
    class counts.

    Subclasses set ``name`` (their key in ``LOSSES``, the trick label's first word) and, when the paper's
    form has no place for label smoothing, ``smoothing_allowed = False``.

    Class weights: ``class_weights`` names a scheme (:func:`~imbsweep.losses.class_weights`);
    with ``reweight_from_epoch`` the weights are off before that epoch and on from it
    (deferred re-weighting, DRW, Cao et al. 2019). :attr:`weight` is what the loss applies
    at the current epoch.

    Args:
        class_counts: training examples per class ``n_c``.
        label_smoothing: in [0, 1).
        class_weights: ``none``, ``inverse``, ``sqrt_inverse`` or ``effective_number``.
        beta: the effective-number hyperparameter, in [0, 1).
        reweight_from_epoch: first epoch (1-based) with weights on; ``None``: from the start.
        reweight_from_fraction: the same relative to the run's length (:func:`drw_epoch`):
            0.75 switches the weights on after 3/4 of ``epochs``; one of the two, or neither.
        epochs: the run's number of epochs (given at build time; needed by
            ``reweight_from_fraction`` only).
    """

    name: ClassVar[str]
    smoothing_allowed: ClassVar[bool] = True
    _parameter_constraints: ClassVar[Mapping[str, Sequence[Constraint]]] = {
        "label_smoothing": [Interval(float, 0, 1, "left")],
        "class_weights": [Options(*SCHEMES)],
        "beta": [Interval(float, 0, 1, "left")],
        "reweight_from_epoch": [Interval(int, 1, None), NULL],
        "reweight_from_fraction": [Interval(float, 0, 1, "left"), NULL],
        "epochs": [Interval(int, 1, None), NULL],
    }
    class_counts: torch.Tensor
    full_weight: torch.Tensor | None

    def __init__(self, class_counts: np.ndarray | torch.Tensor, label_smoothing: float = 0.0,
                 class_weights: str = "none", beta: float = 0.999,
                 reweight_from_epoch: int | None = None, reweight_from_fraction: float | None = None,
                 epochs: int | None = None) -> None:
        super().__init__()
        if reweight_from_fraction is not None:
            reweight_from_epoch = drw_epoch(reweight_from_fraction, epochs, reweight_from_epoch)
        if label_smoothing and not self.smoothing_allowed:
            raise ConfigError("loss.label_smoothing", label_smoothing,
                              f"must be 0 for loss {self.name!r}: {self.smoothing_reason()}")
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("class_counts",
                             torch.as_tensor(np.asarray(class_counts), dtype=torch.float32))
        self.scheme = class_weights  # the class-weight scheme it was built with (none, inverse, …)
        self.beta = beta
        self.register_buffer("full_weight", scheme_weights(self.class_counts, class_weights, beta))
        if reweight_from_epoch is not None and self.full_weight is None:
            raise ConfigError("loss.reweight_from_epoch", reweight_from_epoch,
                              "needs loss.class_weights other than none (there is nothing to switch on)")
        self.reweight_from_epoch = reweight_from_epoch
        self.epoch = 1

    def smoothing_reason(self) -> str:
        return "its paper's form has no label smoothing"

    @property
    def weight(self) -> torch.Tensor | None:
        """The class weights in force at the current epoch (``None``: unweighted)."""
        if self.reweight_from_epoch is not None and self.epoch < self.reweight_from_epoch:
            return None
        return self.full_weight

    @property
    def log_prior(self) -> torch.Tensor:
        """``log(n_c / N)``, the log of the training label prior."""
        return torch.log(self.class_counts / self.class_counts.sum())

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of every epoch (1-based); DRW reads it."""
        self.epoch = int(epoch)

    def make_head(self, in_features: int, n_classes: int) -> nn.Module | None:
        """The classifier head this loss needs instead of the model's linear one (LDAM's
        normalised classifier), or ``None`` to keep the model's."""
        return None


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
