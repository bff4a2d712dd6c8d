"""The loss interface every imbalance loss implements."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError


class ImbalanceLoss(nn.Module):
    """A loss over logits ``[N, C]`` and integer targets ``[N]`` that knows the training
    class counts.

    Subclasses set ``name`` (their registry key and ``loss.name``) and ``weight_scheme``
    (the class-weight scheme they apply, ``none`` if none) which the trick label reads.
    """

    name: ClassVar[str]
    class_counts: torch.Tensor

    def __init__(self, class_counts: np.ndarray | torch.Tensor, label_smoothing: float = 0.0,
                 ) -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ConfigError("loss.label_smoothing", label_smoothing, "must be in [0, 1)")
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("class_counts",
                             torch.as_tensor(np.asarray(class_counts), dtype=torch.float32))

    @property
    def weight_scheme(self) -> str:
        return "none"

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of every epoch (1-based); schedules such as DRW use it."""
