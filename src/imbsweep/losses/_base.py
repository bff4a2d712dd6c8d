"""The loss interface every imbalance loss implements, with the class-weight machinery
(schemes and deferred re-weighting) they share."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ._weights import class_weights as scheme_weights


class ImbalanceLoss(nn.Module):
    """A loss over logits ``[N, C]`` and integer targets ``[N]`` that knows the training
    class counts.

    Subclasses set ``name`` (their registry key and ``loss.name``) and, when the paper's
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
    """

    name: ClassVar[str]
    smoothing_allowed: ClassVar[bool] = True
    class_counts: torch.Tensor
    full_weight: torch.Tensor | None

    def __init__(self, class_counts: np.ndarray | torch.Tensor, label_smoothing: float = 0.0,
                 class_weights: str = "none", beta: float = 0.999,
                 reweight_from_epoch: int | None = None) -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ConfigError("loss.label_smoothing", label_smoothing, "must be in [0, 1)")
        if label_smoothing and not self.smoothing_allowed:
            raise ConfigError("loss.label_smoothing", label_smoothing,
                              f"must be 0 for loss {self.name!r}: {self.smoothing_reason()}")
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("class_counts",
                             torch.as_tensor(np.asarray(class_counts), dtype=torch.float32))
        self.scheme = class_weights  # the class-weight scheme it was built with (none, inverse, …)
        self.beta = beta
        self.register_buffer("full_weight", scheme_weights(self.class_counts, class_weights, beta))
        if reweight_from_epoch is not None:
            if isinstance(reweight_from_epoch, bool) or not isinstance(reweight_from_epoch, int) \
                    or reweight_from_epoch < 1:
                raise ConfigError("loss.reweight_from_epoch", reweight_from_epoch,
                                  "must be an integer >= 1 (the first epoch with weights) or null")
            if self.full_weight is None:
                raise ConfigError("loss.reweight_from_epoch", reweight_from_epoch,
                                  "needs loss.class_weights other than none (there is nothing to "
                                  "switch on)")
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
