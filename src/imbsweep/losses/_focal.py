"""Focal loss (Lin et al. 2017) and the class-balanced loss (Cui et al. 2019)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..constraints import Interval, Options, checked
from ._base import ImbalanceLoss


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float,
               weight: torch.Tensor | None) -> torch.Tensor:
    """``-w_y (1 - p_y)^gamma log p_y`` (softmax form), averaged as PyTorch averages a
    weighted cross-entropy: divided by the summed weights of the targets."""
    logp = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    per = -torch.pow(-torch.expm1(logp), gamma) * logp if gamma else -logp
    if weight is None:
        return per.mean()
    w = weight.to(logits.dtype)[target]
    return (w * per).sum() / w.sum()


@checked("loss")
class Focal(ImbalanceLoss):
    """Focal loss, softmax form: ``-alpha_y (1 - p_y)^gamma log p_y``; ``gamma = 0`` is CE.

    The per-class ``alpha`` comes from a class-weight scheme (``class_weights``; ``none``
    means no alpha). Label smoothing is not allowed: the focal factor is defined on the one
    target class's probability.

    Args:
        gamma: the focusing parameter (2 in the paper), >= 0.
        others: as in :class:`ImbalanceLoss`.
    """

    name = "focal"
    smoothing_allowed = False
    _parameter_constraints = {"gamma": [Interval(float, 0, None)]}

    def __init__(self, class_counts: np.ndarray | torch.Tensor, gamma: float = 2.0,
                 class_weights: str = "none", beta: float = 0.999,
                 reweight_from_epoch: int | None = None, label_smoothing: float = 0.0,
                 reweight_from_fraction: float | None = None, epochs: int | None = None) -> None:
        super().__init__(class_counts, label_smoothing, class_weights, beta, reweight_from_epoch,
                         reweight_from_fraction, epochs)
        self.gamma = float(gamma)

    def smoothing_reason(self) -> str:
        return "the focal factor (1 - p_t)^gamma is defined on the one target class (Lin et al. 2017)"

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, target, self.gamma, self.weight)


@checked("loss")
class ClassBalanced(ImbalanceLoss):
    """Class-balanced loss (Cui et al. 2019): the base loss weighted per class by the
    inverse effective number ``(1 - beta) / (1 - beta^n_c)``, normalised to sum to C.

    ``beta = 0`` weights every class equally (the base loss); ``beta -> 1`` tends to
    inverse-frequency weights.

    Args:
        beta: in [0, 1); the paper searches 0.9 ... 0.9999.
        base: ``ce`` (softmax cross-entropy) or ``focal``.
        gamma: the focal parameter when ``base = focal``.
        label_smoothing: only with ``base = ce``.
        reweight_from_epoch: deferred re-weighting, as in :class:`ImbalanceLoss`.
    """

    name = "class_balanced"
    BASES = ("ce", "focal")
    _parameter_constraints = {"base": [Options(*BASES)], "gamma": [Interval(float, 0, None)]}

    def __init__(self, class_counts: np.ndarray | torch.Tensor, beta: float = 0.9999,
                 base: str = "focal", gamma: float = 1.0, label_smoothing: float = 0.0,
                 reweight_from_epoch: int | None = None,
                 reweight_from_fraction: float | None = None, epochs: int | None = None) -> None:
        self.base = base
        super().__init__(class_counts, label_smoothing, "effective_number", beta, reweight_from_epoch,
                         reweight_from_fraction, epochs)
        self.gamma = float(gamma)

    @property
    def smoothing_allowed(self) -> bool:  # type: ignore[override]
        return self.base == "ce"

    def smoothing_reason(self) -> str:
        return "with loss.base=focal the focal factor is defined on the one target class; use base=ce"

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.base == "focal":
            return focal_loss(logits, target, self.gamma, self.weight)
        return F.cross_entropy(logits, target, weight=self.weight, label_smoothing=self.label_smoothing)


__all__ = ["ClassBalanced", "Focal", "focal_loss"]
