"""Typed access to a model's parts: ``Classifier.head`` may be any module, and torch types an
attribute it cannot see as ``Tensor | Module``; these say, and check, what a test expects."""

from __future__ import annotations

import torch

from imbsweep.models import Classifier, ScaledHead


def classifier(model: torch.nn.Module) -> Classifier:
    """``model`` as the features-then-head classifier every built-in model is."""
    assert isinstance(model, Classifier), type(model)
    return model


def features(model: torch.nn.Module) -> torch.nn.Sequential:
    """The model's feature extractor, a sequence of layers."""
    layers = classifier(model).features
    assert isinstance(layers, torch.nn.Sequential), type(layers)
    return layers


def linear_head(model: torch.nn.Module) -> torch.nn.Linear:
    """The model's classifier, a plain linear layer (LDAM's is normalised, LWS's scaled)."""
    head = classifier(model).head
    assert isinstance(head, torch.nn.Linear), type(head)
    return head


def scaled_head(model: torch.nn.Module) -> tuple[ScaledHead, torch.nn.Linear]:
    """LWS: the learnt scales, and the frozen linear classifier under them."""
    head = classifier(model).head
    assert isinstance(head, ScaledHead) and isinstance(head.base, torch.nn.Linear), type(head)
    return head, head.base
