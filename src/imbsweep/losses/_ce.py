"""Cross-entropy and the losses that are cross-entropy on shifted logits: logit-adjusted
(Menon et al. 2021) and balanced softmax (Ren et al. 2020)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..constraints import Interval, checked
from ._base import ImbalanceLoss


class CrossEntropy(ImbalanceLoss):
    """``torch.nn.functional.cross_entropy`` with a class-weight scheme.

    With weights, the mean is taken as PyTorch does: divided by the summed weights of the
    targets. Label smoothing mixes in the uniform distribution, weighted the same way.
    Arguments as in :class:`ImbalanceLoss`.
    """

    name = "ce"

    def __init__(self, class_counts: np.ndarray | torch.Tensor, label_smoothing: float = 0.0,
                 class_weights: str = "none", beta: float = 0.999,
                 reweight_from_epoch: int | None = None,
                 reweight_from_fraction: float | None = None, epochs: int | None = None) -> None:
        super().__init__(class_counts, label_smoothing, class_weights, beta, reweight_from_epoch,
                         reweight_from_fraction, epochs)

    def adjust(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits the cross-entropy is taken on (unchanged for plain CE)."""
        return logits

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.adjust(logits), target, weight=self.weight,
                               label_smoothing=self.label_smoothing)


@checked("loss")
class LogitAdjusted(CrossEntropy):
    """Logit-adjusted loss (Menon et al. 2021, eq. 10): cross-entropy on
    ``z + tau * log(pi)``, ``pi`` the training label prior. ``tau = 0`` is plain CE.

    Args:
        tau: the adjustment strength (1 in the paper), >= 0.
        others: as in :class:`CrossEntropy`.
    """

    name = "logit_adjusted"
    _parameter_constraints = {"tau": [Interval(float, 0, None)]}

    def __init__(self, class_counts: np.ndarray | torch.Tensor, tau: float = 1.0,
                 label_smoothing: float = 0.0, class_weights: str = "none", beta: float = 0.999,
                 reweight_from_epoch: int | None = None,
                 reweight_from_fraction: float | None = None, epochs: int | None = None) -> None:
        super().__init__(class_counts, label_smoothing, class_weights, beta, reweight_from_epoch,
                         reweight_from_fraction, epochs)
        self.tau = float(tau)

    def adjust(self, logits: torch.Tensor) -> torch.Tensor:
        return logits + self.tau * self.log_prior.to(logits.dtype)


class BalancedSoftmax(CrossEntropy):
    """Balanced softmax (Ren et al. 2020, eq. 4): cross-entropy on ``z + log(n_c)``.

    Shifting every logit by the same ``log N`` changes nothing, so this equals
    :class:`LogitAdjusted` with ``tau = 1``. Arguments as in :class:`CrossEntropy`.
    """

    name = "balanced_softmax"

    def adjust(self, logits: torch.Tensor) -> torch.Tensor:
        return logits + torch.log(self.class_counts).to(logits.dtype)
