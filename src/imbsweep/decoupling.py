"""Decoupled classifier learning (Kang et al. 2020, "Decoupling representation and classifier
for long-tailed recognition"): what is done to the classifier of a trained model.

- **τ-normalisation**, post hoc: every class's weight row ``w_c`` becomes ``w_c / ||w_c||^τ``
  (the bias is kept, so τ = 0 is the plain classifier); :class:`TauNorm`.
- **Classifier re-training**, a second stage on frozen features (the group ``conf/stage2/``):
  ``crt`` re-initialises the classifier and trains it again, ``lws`` keeps it and learns one
  scale per class (:class:`~imbsweep.models.ScaledHead`); both with class-balanced sampling,
  plain cross-entropy, their own epochs and learning rate (:class:`Stage2`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .constraints import Constraint, Interval, Options, validate
from .errors import ConfigError
from .models import ScaledHead, classifier_weight_name
from .resampling import RESAMPLERS


def taunorm_weight(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """``w_c / ||w_c||^tau`` for every row ``w_c`` of ``weight`` (Kang et al. 2020, eq. 3);
    ``tau = 0`` returns the weights unchanged, ``tau = 1`` unit rows (a zero row stays zero)."""
    if not tau:
        return weight
    return weight / weight.norm(dim=1, keepdim=True).clamp(min=1e-12).pow(tau)


class TauNorm:
    """The logits of ``head`` on fixed ``features`` with its class weights τ-normalised, for
    any τ, as float32 computed in batches of ``batch_size``.

    τ = 0 is ``head(features)`` in the batches the plain prediction uses, so exactly its
    logits. For a linear head ``W f`` is computed once: ``(W / n^τ) f + b = (W f) / n^τ + b``
    with ``n`` the row norms, so another τ costs a column scaling, not a matrix product.
    Other heads (LWS's scales, a normalised classifier) are called with their weights
    replaced.

    Raises:
        ValueError: ``head`` has no per-class weight matrix.
    """

    def __init__(self, head: nn.Module, features: torch.Tensor, batch_size: int) -> None:
        name = classifier_weight_name(head)
        if name is None:
            raise ValueError(f"{type(head).__name__} has no per-class weight matrix")
        self.head, self.name, self.features, self.batch_size = head, name, features, batch_size
        self._wf: torch.Tensor | None = None
        self._norms: torch.Tensor | None = None

    def _batches(self, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        f, bs = self.features, self.batch_size
        call = self.head if params is None else (lambda x: torch.func.functional_call(self.head, params, (x,)))
        return torch.cat([call(f[i:i + bs]).float() for i in range(0, len(f), bs)])

    @torch.no_grad()
    def logits(self, tau: float) -> torch.Tensor:
        """``[N, C]`` float32 logits at ``tau``."""
        self.head.eval()
        if not tau:
            return self._batches()
        weight = self.head.get_parameter(self.name)
        if type(self.head) is not nn.Linear:
            return self._batches({self.name: taunorm_weight(weight, tau)})
        if self._wf is None:
            self._wf = F.linear(self.features, weight).float()
            self._norms = weight.norm(dim=1).clamp(min=1e-12).float()
        assert self._norms is not None
        out = self._wf / self._norms.pow(tau)
        bias = self.head.bias
        return out if bias is None else out + bias.float()


def taunorm_logits(head: nn.Module, features: torch.Tensor, tau: float, batch_size: int = 1024) -> torch.Tensor:
    """The logits of the τ-normalised classifier (:class:`TauNorm`); ``head`` is left as it is.

    Args:
        head: the trained classifier (an ``nn.Linear``, or any with a per-class weight matrix).
        features: what ``head`` takes, ``[N, d]``.
        tau: the normalisation's strength, >= 0 (0: ``head(features)``; pick it on validation
            with :func:`imbsweep.posthoc.best_taunorm_tau`).
        batch_size: the features' batch size for ``head``.

    Returns:
        ``[N, C]`` float32 logits.
    """
    return TauNorm(head, features, batch_size).logits(tau)


@dataclass(frozen=True)
class Stage2:
    """Classifier re-training after the main run (``stage2=crt|lws``: :class:`CRT`,
    :class:`LWS`; ``none`` is :class:`NoStage2`, no second stage).

    The features are frozen at the main run's selected epoch and computed once (eval mode);
    the classifier is trained on them for ``epochs`` epochs with ``sampling`` (class-balanced,
    as in Kang et al. 2020), plain cross-entropy, the run's optimizer and batch size at
    learning rate ``lr`` with a cosine decay to 0 over the stage. Each epoch is validated and
    reported after the main run's epochs; the best stage-2 epoch on ``objective.metric`` is kept.

    Args:
        epochs: stage-2 epochs, >= 1 (10 in the paper).
        lr: its learning rate, > 0.
        sampling: a resampling name (``class_balanced`` in the paper).
    """

    name: ClassVar[str]
    _parameter_constraints: ClassVar[Mapping[str, Sequence[Constraint]]] = {
        "epochs": [Interval(int, 1, None)], "lr": [Interval(float, 0, None, "right")],
        "sampling": [Options(*RESAMPLERS)]}

    epochs: int = 10
    lr: float = 0.01
    sampling: str = "class_balanced"

    def __post_init__(self) -> None:
        validate(type(self), dataclasses.asdict(self), "stage2")

    def new_head(self, head: nn.Module) -> tuple[nn.Module, list[nn.Parameter]]:
        """The classifier stage 2 trains, and its trainable parameters."""
        raise NotImplementedError

    def check_head(self, head: nn.Module) -> None:
        """Raises ConfigError when ``head`` is not a classifier this stage can train."""


class CRT(Stage2):
    """Classifier re-training (cRT): the classifier re-initialised, then trained again."""

    name = "crt"

    def new_head(self, head: nn.Module) -> tuple[nn.Module, list[nn.Parameter]]:
        fresh = copy.deepcopy(head)
        for m in fresh.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
        return fresh, list(fresh.parameters())

    def check_head(self, head: nn.Module) -> None:
        if not any(callable(getattr(m, "reset_parameters", None)) for m in head.modules()):
            raise ConfigError("stage2", self.name, f"needs a head that can be re-initialised; "
                                                   f"{type(head).__name__} has no reset_parameters")


class LWS(Stage2):
    """Learnable weight scaling (LWS): the classifier kept, frozen, under one learnt scale per class."""

    name = "lws"

    def new_head(self, head: nn.Module) -> tuple[nn.Module, list[nn.Parameter]]:
        scaled = ScaledHead(head)
        return scaled, [scaled.scales]

    def check_head(self, head: nn.Module) -> None:
        if not isinstance(getattr(head, "out_features", None), int):
            raise ConfigError("stage2", self.name, f"needs a head with out_features; {type(head).__name__} has none")


class NoStage2:
    """No second stage (the group's ``none`` option)."""

    name: ClassVar[str] = "none"


#: the second stages by short name (``stage2=<name>``)
STAGES2: dict[str, type[Stage2] | type[NoStage2]] = {"none": NoStage2, "crt": CRT, "lws": LWS}


def build_stage2(node: Any) -> Stage2 | None:
    """The second stage a ``stage2`` config node describes (``_target_`` plus its arguments);
    None for None and :class:`NoStage2`.

    Raises:
        ConfigError: a bad value or a key the class does not take.
    """
    from .building import instantiate_checked

    if node is None:
        return None
    stage = instantiate_checked(node, "stage2")
    if isinstance(stage, NoStage2):
        return None
    if not isinstance(stage, Stage2):
        raise ConfigError("stage2._target_", type(stage).__qualname__,
                          "must be a subclass of imbsweep.decoupling.Stage2 (CRT, LWS), or "
                          "imbsweep.decoupling.NoStage2")
    return stage


def check_head(head: nn.Module, stage2: Stage2 | None) -> None:
    """A second stage needs a classifier it can re-initialise (cRT) or scale (LWS).

    Raises:
        ConfigError: the model's head is not such a classifier.
    """
    if stage2 is not None:
        stage2.check_head(head)


__all__ = ["CRT", "LWS", "STAGES2", "NoStage2", "Stage2", "TauNorm", "build_stage2", "check_head", "taunorm_logits",
           "taunorm_weight"]
