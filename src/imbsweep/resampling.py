"""Resampling of the training split, on the in-memory fast path: each epoch is a vector
of N example indices drawn with the seeded generator (the group ``conf/resampling/``).

Class ``c`` is drawn with probability ``p_c`` and an example within it uniformly, so an
example of class ``c`` has probability ``p_c / n_c`` per draw:

- ``none``: one shuffled pass (``p_c = n_c / N``, without replacement);
- ``class_balanced``: ``p_c = 1 / C``;
- ``sqrt``: ``p_c ∝ n_c^(1/2)``;
- ``progressive`` (Kang et al. 2020): ``p_c(t) = (1 - t/T) n_c/N + (t/T) / C`` with
  ``t = epoch - 1`` and ``T = epochs - 1``.

In a training loop of your own, :class:`ImbalancedSampler` is the same draw as a
``torch.utils.data.Sampler``::

    loader = DataLoader(train_set, batch_size=64, sampler=ImbalancedSampler(labels, "sqrt"))
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch.utils.data import Sampler


class Resampler:
    """Draws each class with probability :meth:`class_probs` (``n_c / N`` here: the data's own
    frequencies, with replacement), then an example within it uniformly.

    Args:
        labels: training labels ``[N]``, integers ``0..C-1`` (a tensor, array or list).
        epochs: the run's number of epochs (for schedules).
    """

    name: ClassVar[str] = "none"

    def __init__(self, labels: Any, epochs: int) -> None:
        self.labels = torch.as_tensor(labels).cpu().long()
        if self.labels.dim() != 1 or not len(self.labels) or int(self.labels.min()) < 0:
            raise ValueError(f"labels must be a non-empty 1-D sequence of class indices >= 0, "
                             f"got shape {tuple(self.labels.shape)}")
        self.epochs = int(epochs)
        self.counts = torch.bincount(self.labels).double()

    def class_probs(self, epoch: int) -> torch.Tensor:
        """Probability of drawing each class at ``epoch`` (1-based), float64 ``[C]``."""
        return self.counts / self.counts.sum()

    def indices(self, epoch: int, generator: torch.Generator) -> torch.Tensor:
        """The epoch's ``N`` training indices (int64), drawn with ``generator``."""
        p = self.class_probs(epoch)
        per_example = torch.where(self.counts > 0, p / self.counts.clamp(min=1), 0)[self.labels]
        return torch.multinomial(per_example, len(self.labels), replacement=True, generator=generator)


class NoResampling(Resampler):
    """No resampling: every epoch is one shuffled pass over the examples (without replacement)."""

    def indices(self, epoch: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(self.labels), generator=generator)


class PowerResampler(Resampler):
    """``p_c ∝ n_c^q`` over the classes present; a subclass sets ``q``."""

    q: ClassVar[float]

    def class_probs(self, epoch: int) -> torch.Tensor:
        p = torch.where(self.counts > 0, self.counts.clamp(min=1).pow(self.q), 0)
        return p / p.sum()


class ClassBalancedResampler(PowerResampler):
    """Class-balanced sampling: every class present equally often (``p_c = 1 / C``)."""

    name = "class_balanced"
    q = 0.0


class SqrtResampler(PowerResampler):
    """Square-root sampling (Mahajan et al. 2018): ``p_c ∝ n_c^(1/2)``."""

    name = "sqrt"
    q = 0.5


class ProgressiveResampler(Resampler):
    """Progressively-balanced sampling (Kang et al. 2020): from the data's frequencies at epoch 1
    to class-balanced at epoch ``epochs``, linearly."""

    name = "progressive"

    def class_probs(self, epoch: int) -> torch.Tensor:
        t = min(max(epoch - 1, 0) / max(self.epochs - 1, 1), 1.0)
        present = (self.counts > 0).double()
        return (1 - t) * self.counts / self.counts.sum() + t * present / present.sum()


RESAMPLERS: dict[str, type[Resampler]] = {
    cls.name: cls for cls in (NoResampling, ClassBalancedResampler, SqrtResampler, ProgressiveResampler)}


def build_resampler(node: Any, labels: Any, epochs: int) -> Resampler:
    """The resampler a ``resampling`` config node describes: ``_target_`` (a :class:`Resampler`
    class, one of ours or your own) plus its arguments, a name of :data:`RESAMPLERS`
    (``"sqrt"``, or ``{"name": "sqrt"}`` from an app's own config), or None (no resampling).

    Args:
        node: a config node or dict (``{"_target_": "imbsweep.resampling.SqrtResampler"}``), a
            name, or None.
        labels: training labels ``[N]``.
        epochs: the run's number of epochs (the progressive schedule's length).

    Raises:
        ConfigError: an unknown name, or a key the class does not take.
    """
    from .building import by_name, instantiate_checked

    node = by_name("none" if node is None else node, "resampling", RESAMPLERS)
    resampler: Resampler = instantiate_checked(node, "resampling", offer={"labels": labels, "epochs": epochs})
    return resampler


class ImbalancedSampler(Sampler[int]):
    """A ``torch.utils.data.Sampler`` of the training indices for your own ``DataLoader``: each
    pass (one epoch) yields ``len(labels)`` indices drawn as resampling ``name`` draws them in
    imbsweep's app, the same indices for the same generator state.

    The epoch (1-based, for ``progressive``) advances by one after each pass; :meth:`set_epoch`
    sets it, as with ``DistributedSampler``.

    Args:
        labels: training labels ``[N]``, integers ``0..C-1`` (a tensor, array or list).
        name: ``none`` (a shuffled pass), ``class_balanced``, ``sqrt`` or ``progressive``.
        epochs: the training's number of epochs (``progressive`` is class-balanced at the last).
        generator: the draws' random generator; None: one seeded from torch's global generator.

    Example:
        >>> labels = [0] * 90 + [1] * 10
        >>> sampler = ImbalancedSampler(labels, "class_balanced", generator=torch.Generator().manual_seed(0))
        >>> idx = list(sampler)
        >>> len(idx), 35 < sum(labels[i] for i in idx) < 65
        (100, True)
    """

    def __init__(self, labels: Any, name: str = "class_balanced", epochs: int = 1,
                 generator: torch.Generator | None = None) -> None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"{epochs=} must be an integer >= 1")
        self.resampler = build_resampler(name, labels, epochs)
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.empty((), dtype=torch.int64).random_()))
        self.generator = generator
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        """The epoch (1-based) the next pass draws."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        idx = self.resampler.indices(self.epoch, self.generator)
        self.epoch += 1
        return iter(idx.tolist())

    def __len__(self) -> int:
        return len(self.resampler.labels)


__all__ = ["RESAMPLERS", "ClassBalancedResampler", "ImbalancedSampler", "NoResampling", "PowerResampler",
           "ProgressiveResampler", "Resampler", "SqrtResampler", "build_resampler"]
