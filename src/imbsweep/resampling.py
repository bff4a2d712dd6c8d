"""Resampling of the training split, on the in-memory fast path: each epoch is a vector
of N example indices drawn with the seeded generator (the group ``conf/resampling/``).

Class ``c`` is drawn with probability ``p_c`` and an example within it uniformly, so an
example of class ``c`` has probability ``p_c / n_c`` per draw:

- ``none``: one shuffled pass (``p_c = n_c / N``, without replacement);
- ``class_balanced``: ``p_c = 1 / C``;
- ``sqrt``: ``p_c ∝ n_c^(1/2)``;
- ``progressive`` (Kang et al. 2020): ``p_c(t) = (1 - t/T) n_c/N + (t/T) / C`` with
  ``t = epoch - 1`` and ``T = epochs - 1``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .errors import ConfigError


class Resampler:
    """Plain shuffling; subclasses draw classes with :meth:`class_probs`.

    Args:
        labels: training labels ``[N]``.
        epochs: the run's number of epochs (for schedules).
    """

    name: ClassVar[str] = "none"

    def __init__(self, labels: torch.Tensor, epochs: int) -> None:
        self.labels = labels.cpu()
        self.epochs = int(epochs)
        self.counts = torch.bincount(self.labels).double()

    def class_probs(self, epoch: int) -> torch.Tensor:
        """Probability of drawing each class at ``epoch`` (1-based)."""
        return self.counts / self.counts.sum()

    def indices(self, epoch: int, generator: torch.Generator) -> torch.Tensor:
        """The epoch's ``N`` training indices."""
        p = self.class_probs(epoch)
        per_example = torch.where(self.counts > 0, p / self.counts.clamp(min=1), 0)[self.labels]
        return torch.multinomial(per_example, len(self.labels), replacement=True, generator=generator)


class NoResampling(Resampler):
    def indices(self, epoch: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(self.labels), generator=generator)


class PowerResampler(Resampler):
    """``p_c ∝ n_c^q`` over the classes present."""

    q: ClassVar[float]

    def class_probs(self, epoch: int) -> torch.Tensor:
        p = torch.where(self.counts > 0, self.counts.clamp(min=1).pow(self.q), 0)
        return p / p.sum()


class ClassBalancedResampler(PowerResampler):
    name = "class_balanced"
    q = 0.0


class SqrtResampler(PowerResampler):
    name = "sqrt"
    q = 0.5


class ProgressiveResampler(Resampler):
    name = "progressive"

    def class_probs(self, epoch: int) -> torch.Tensor:
        t = min(max(epoch - 1, 0) / max(self.epochs - 1, 1), 1.0)
        present = (self.counts > 0).double()
        return (1 - t) * self.counts / self.counts.sum() + t * present / present.sum()


RESAMPLERS: dict[str, type[Resampler]] = {
    cls.name: cls for cls in (NoResampling, ClassBalancedResampler, SqrtResampler, ProgressiveResampler)}


def build_resampler(node: Any, labels: torch.Tensor, epochs: int) -> Resampler:
    """The resampler a ``resampling`` config node names (``None``: no resampling).

    Raises:
        ConfigError: unknown ``resampling.name`` or an extra key.
    """
    cfg = dict(node or {"name": "none"})
    name = cfg.pop("name", None)
    if name not in RESAMPLERS:
        raise ConfigError("resampling.name", name, f"must be one of {', '.join(RESAMPLERS)}")
    for k, v in cfg.items():
        raise ConfigError(f"resampling.{k}", v, f"not an argument of resampling {name!r}; it takes none")
    return RESAMPLERS[name](labels, epochs)


__all__ = ["RESAMPLERS", "Resampler", "build_resampler"]
