"""Mixup (Zhang et al. 2018) and Remix (Chou et al. 2020) on the in-memory fast path: each
training batch is mixed with a shuffled copy of itself (the group ``conf/augment/``).

For a batch ``(x, y)``, a permutation ``j`` of it and ``λ ~ Beta(α, α)`` (one per batch):
the model sees ``λ x + (1 - λ) x_j`` and the loss is ``λ_y L(y) + (1 - λ_y) L(y_j)``, where
``L`` is the run's loss (any of them, class weights and all).

- ``mixup``: ``λ_y = λ``; ``alpha = 0`` is no mixing (``λ = 1``, Zhang et al.'s convention),
  so the run is exactly the plain one.
- ``remix``: the label leans to the minority class (Chou et al. 2020, eq. 10): with ``n_i``
  and ``n_j`` the training counts of the two labels, ``λ_y = 0`` if ``n_i / n_j >= κ`` and
  ``λ < τ``; ``λ_y = 1`` if ``n_i / n_j <= 1/κ`` and ``1 - λ < τ``; else ``λ_y = λ``.

Per-example ``λ_y`` (Remix) takes each group of equal ``λ_y`` with its own share of the batch:
``Σ_g |g|/B [λ_g L_g(y) + (1 - λ_g) L_g(y_j)]``, which is Chou et al.'s per-example mean for
an unweighted loss and keeps each loss's own mean (the weighted one for class weights).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from .constraints import Constraint, Interval, checked
from .errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def remix_label_weights(lam: float, n_i: torch.Tensor, n_j: torch.Tensor, kappa: float,
                        tau: float) -> torch.Tensor:
    """Remix's label weight ``λ_y`` on the first label of each pair (Chou et al. 2020, eq. 10).

    Args:
        lam: the input mixing weight of the first example.
        n_i: training count of each pair's first label.
        n_j: training count of each pair's second label.
        kappa: how many times larger a class must be to count as the majority, >= 1.
        tau: the input share below which the majority example loses its label, in [0, 1].
    """
    ratio = n_i.double() / n_j.double()
    w = torch.full(ratio.shape, float(lam), dtype=torch.float64, device=ratio.device)
    if lam < tau:
        w[ratio >= kappa] = 0.0
    if 1 - lam < tau:
        w[ratio <= 1 / kappa] = 1.0
    return w


def mixed_loss(loss_fn: LossFn, logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor,
               w: float | torch.Tensor) -> torch.Tensor:
    """``w L(y_a) + (1 - w) L(y_b)``: one weight for the batch (mixup), or one per example
    (Remix), then each group of equal weights with its share of the batch."""
    if isinstance(w, float):
        return w * loss_fn(logits, y_a) + (1 - w) * loss_fn(logits, y_b)
    values = torch.unique(w)
    if len(values) == 1:
        return mixed_loss(loss_fn, logits, y_a, y_b, float(values[0]))
    total = logits.new_zeros(())
    for v in values.tolist():
        m = w == v
        part = logits.new_zeros(())
        if v > 0:
            part = part + v * loss_fn(logits[m], y_a[m])
        if v < 1:
            part = part + (1 - v) * loss_fn(logits[m], y_b[m])
        total = total + part * (float(m.sum()) / len(w))
    return total


@checked("augment")
class Mixup:
    """Mixup: inputs and labels mixed by the same ``λ ~ Beta(α, α)``.

    Args:
        class_counts: training examples per class.
        alpha: the Beta distribution's parameter, finite and >= 0 (0: no mixing).
        seed: seeds the draws of ``λ`` and of the pairing (a stream of its own, so the batch
            order is the plain run's).
    """

    name: ClassVar[str] = "mixup"
    _parameter_constraints: ClassVar[Mapping[str, Sequence[Constraint]]] = {
        "alpha": [Interval(float, 0, None)], "seed": [Interval(int, None, None)]}

    def __init__(self, class_counts: np.ndarray | torch.Tensor, alpha: float = 1.0, seed: int = 0) -> None:
        self.alpha = float(alpha)
        self.class_counts = torch.as_tensor(np.asarray(class_counts), dtype=torch.float64)
        self.rng = np.random.default_rng(seed)

    def label_weights(self, lam: float, y_a: torch.Tensor, y_b: torch.Tensor) -> float | torch.Tensor:
        """The weight of the first label: ``λ`` itself for mixup."""
        return lam

    def draw(self, batch: int) -> tuple[float, torch.Tensor]:
        """``λ`` and the pairing permutation for a batch of ``batch`` examples."""
        lam = float(self.rng.beta(self.alpha, self.alpha))
        return lam, torch.from_numpy(self.rng.permutation(batch))

    def loss(self, model: torch.nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch, mixed."""
        lam, perm = self.draw(len(y))
        perm = perm.to(y.device)
        y_b = y[perm]
        logits = model(lam * x + (1 - lam) * x[perm])
        return mixed_loss(loss_fn, logits, y, y_b, self.label_weights(lam, y, y_b))


@checked("augment")
class Remix(Mixup):
    """Remix: inputs mixed as in mixup, labels toward the minority class (Chou et al. 2020).

    Args:
        class_counts: training examples per class.
        alpha: the Beta distribution's parameter, finite and >= 0 (1 in the paper).
        kappa: the majority ratio, finite and >= 1 (3 in the paper).
        tau: the input share threshold, in [0, 1] (0.5 in the paper).
        seed: as in :class:`Mixup`.
    """

    name = "remix"
    _parameter_constraints = {"kappa": [Interval(float, 1, None)], "tau": [Interval(float, 0, 1)]}

    def __init__(self, class_counts: np.ndarray | torch.Tensor, alpha: float = 1.0, kappa: float = 3.0,
                 tau: float = 0.5, seed: int = 0) -> None:
        super().__init__(class_counts, alpha, seed)
        self.kappa, self.tau = float(kappa), float(tau)

    def label_weights(self, lam: float, y_a: torch.Tensor, y_b: torch.Tensor) -> float | torch.Tensor:
        counts = self.class_counts.to(y_a.device)
        return remix_label_weights(lam, counts[y_a], counts[y_b], self.kappa, self.tau)


class NoMixing:
    """No batch mixing (the group's ``none`` option): the plain run."""

    name: ClassVar[str] = "none"


AUGMENTS: dict[str, type[Mixup] | type[NoMixing]] = {"none": NoMixing, "mixup": Mixup, "remix": Remix}


def build_augment(node: Any, class_counts: np.ndarray, seed: int) -> Mixup | None:
    """The batch mixing an ``augment`` config node describes (``_target_`` plus its arguments,
    or None); None for :class:`NoMixing` and for ``alpha = 0`` (no mixing: the plain run,
    exactly).

    Raises:
        ConfigError: a bad value or a key the class does not take.
    """
    from .building import instantiate_checked, target_of

    mixer = instantiate_checked(node if node is not None else {"_target_": target_of(NoMixing)}, "augment",
                                offer={"class_counts": class_counts, "seed": seed})
    if isinstance(mixer, NoMixing) or getattr(mixer, "alpha", None) == 0:
        return None
    if not isinstance(mixer, Mixup):
        raise ConfigError("augment._target_", type(mixer).__qualname__,
                          "must be imbsweep.augment.Mixup or a subclass (Remix), or imbsweep.augment.NoMixing")
    return mixer


__all__ = ["AUGMENTS", "Mixup", "NoMixing", "Remix", "build_augment", "mixed_loss", "remix_label_weights"]
