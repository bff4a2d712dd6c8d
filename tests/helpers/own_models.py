"""Models "of the user's own" for ``model._target_=tests.helpers.own_models.<Name>``: plain
``nn.Module`` classes and factories that know nothing about imbsweep."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class MyNet(nn.Module):
    """A small MLP whose forward returns its linear classifier's output: ``self.fc(...)``."""

    def __init__(self, in_features: int, n_classes: int, hidden: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
        self.fc = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


class NoHead(nn.Module):
    """Logits from a bare weight matrix: no ``nn.Linear`` with n_classes outputs."""

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        self.body = nn.Linear(in_features, 16)
        self.classes = nn.Parameter(torch.randn(n_classes, 16) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x.flatten(1))) @ self.classes.T


class ScaledOutput(nn.Module):
    """An ``nn.Linear`` with n_classes outputs, but the model returns twice its output: the layer
    is not the model's classifier head."""

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * self.fc(x.flatten(1))


class NumClasses(nn.Module):
    """torchvision's argument name, and no ``in_features``: it learns its input size."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.LazyLinear(8), nn.ReLU())
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def sequential(**kwargs: Any) -> nn.Module:
    """A factory that passes ``**kwargs`` on, as torchvision's builders do; the classifier is the
    last layer of an ``nn.Sequential``."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, kwargs.pop("num_classes")))


class WrongWidth(nn.Module):
    """Maps a batch to 3 outputs whatever the class count."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class WantsImages(nn.Module):
    """A 2-D convolution: it cannot take flat vectors."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


class BreaksInTraining(nn.Module):
    """Takes imbsweep's two-example check, then fails on the first training batch (more than
    two examples): a user's model whose bug shows only when a trial trains."""

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > 2:
            raise RuntimeError("the model broke on a batch of " + str(len(x)))
        return self.fc(x.flatten(1))
