"""Cross-entropy with label smoothing and class weights (PyTorch's semantics)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._base import ImbalanceLoss
from ._weights import class_weights as scheme_weights


class CrossEntropy(ImbalanceLoss):
    """``torch.nn.functional.cross_entropy`` with a class-weight scheme.

    With weights, the mean is taken as PyTorch does: divided by the summed weights of the
    targets. Label smoothing mixes in the uniform distribution, weighted the same way.

    Args:
        class_counts: training examples per class.
        label_smoothing: in [0, 1).
        class_weights: ``none``, ``inverse``, ``sqrt_inverse`` or ``effective_number``.
        beta: the effective-number hyperparameter, in [0, 1).
    """

    name = "ce"
    weight: torch.Tensor | None

    def __init__(self, class_counts: np.ndarray | torch.Tensor, label_smoothing: float = 0.0,
                 class_weights: str = "none", beta: float = 0.999) -> None:
        super().__init__(class_counts, label_smoothing)
        self.scheme = class_weights
        self.beta = beta
        self.register_buffer("weight", scheme_weights(self.class_counts, class_weights, beta))

    @property
    def weight_scheme(self) -> str:
        return self.scheme

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, weight=self.weight,
                               label_smoothing=self.label_smoothing)

