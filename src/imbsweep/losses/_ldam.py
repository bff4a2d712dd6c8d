"""LDAM: label-distribution-aware margin loss (Cao et al. 2019)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..constraints import Interval, checked
from ..models import NormedLinear
from ._base import ImbalanceLoss


def ldam_margins(class_counts: np.ndarray | torch.Tensor, max_m: float) -> torch.Tensor:
    """``m_c = K / n_c^(1/4)`` with ``K`` chosen so the largest margin (the rarest class's)
    is ``max_m`` (Cao et al. 2019, eq. 12 and their code)."""
    n = torch.as_tensor(np.asarray(class_counts), dtype=torch.float64)
    m = n.pow(-0.25)
    return (m * (max_m / m.max())).float()


@checked("loss")
class LDAM(ImbalanceLoss):
    """LDAM loss: cross-entropy on ``s * (cos_y - m_y)`` for the target class and
    ``s * cos_j`` for the others, where ``cos`` comes from a normalised linear classifier
    (unit-norm features and class weights, no bias), as in the paper.

    The loss replaces the model's linear head with :class:`~imbsweep.models.NormedLinear`
    whose output is already scaled by ``s``, so evaluation sees the same logits (and
    calibrated-scale probabilities). Combine with ``class_weights`` and
    ``reweight_from_epoch`` for the paper's LDAM-DRW. ``max_m = 0`` is cross-entropy on
    the normalised classifier's logits.

    Args:
        max_m: the largest margin, in [0, 1) (0.5 in the paper).
        s: the logit scale, > 0 (30 in the paper's code).
        others: as in :class:`ImbalanceLoss`.
    """

    name = "ldam"
    margins: torch.Tensor
    _parameter_constraints = {"max_m": [Interval(float, 0, 1, "left")], "s": [Interval(float, 0, None, "right")]}

    def __init__(self, class_counts: np.ndarray | torch.Tensor, max_m: float = 0.5, s: float = 30.0,
                 class_weights: str = "none", beta: float = 0.9999,
                 reweight_from_epoch: int | None = None, label_smoothing: float = 0.0,
                 reweight_from_fraction: float | None = None, epochs: int | None = None) -> None:
        super().__init__(class_counts, label_smoothing, class_weights, beta, reweight_from_epoch,
                         reweight_from_fraction, epochs)
        self.max_m, self.s = float(max_m), float(s)
        self.register_buffer("margins", ldam_margins(self.class_counts, self.max_m))

    def make_head(self, in_features: int, n_classes: int) -> nn.Module:
        return NormedLinear(in_features, n_classes, scale=self.s)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        shift = F.one_hot(target, logits.shape[1]).to(logits.dtype) * (self.s * self.margins.to(logits.dtype))
        return F.cross_entropy(logits - shift, target, weight=self.weight,
                               label_smoothing=self.label_smoothing)
