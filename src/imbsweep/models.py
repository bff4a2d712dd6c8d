"""Classifiers. Each is ``features -> head``; ``head`` is a plain ``nn.Linear`` so that a loss
that needs another classifier (LDAM's normalised one) can replace it.

Config files (``conf/model/*.yaml``) hold ``_target_`` plus the constructor's arguments;
``in_features`` and ``n_classes`` come from the data at run time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .errors import ConfigError


class Classifier(nn.Module):
    """``head(features(x))``."""

    features: nn.Module
    head: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class NormedLinear(nn.Module):
    """Cosine classifier: ``scale * normalize(x) @ normalize(W).T`` (no bias), the
    normalised linear layer LDAM uses (Cao et al. 2019); initialised as in their code.

    Args:
        in_features: feature size.
        out_features: number of classes.
        scale: the factor ``s`` on the cosines.
    """

    def __init__(self, in_features: int, out_features: int, scale: float = 1.0) -> None:
        super().__init__()
        self.in_features, self.out_features, self.scale = in_features, out_features, float(scale)
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-1, 1)
                                   .renorm_(2, 0, 1e-5).mul_(1e5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * nn.functional.normalize(x, dim=1) @ nn.functional.normalize(self.weight, dim=1).T


class LogisticRegression(Classifier):
    """Multinomial logistic regression: one linear layer on the flattened input."""

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        self.features = nn.Flatten()
        self.head = nn.Linear(in_features, n_classes)


class MLP(Classifier):
    """Fully connected ReLU network.

    Args:
        in_features: flattened input size.
        n_classes: number of classes.
        hidden_sizes: width of each hidden layer.
        dropout: dropout probability after each hidden layer, in [0, 1).
    """

    def __init__(self, in_features: int, n_classes: int,
                 hidden_sizes: Sequence[int] = (256, 256), dropout: float = 0.0) -> None:
        super().__init__()
        if not 0 <= dropout < 1:
            raise ConfigError("model.dropout", dropout, "must be in [0, 1)")
        if not hidden_sizes or any(int(h) < 1 for h in hidden_sizes):
            raise ConfigError("model.hidden_sizes", list(hidden_sizes),
                              "must be a non-empty list of integers >= 1")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden_sizes:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = int(h)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)


class CNN1D(Classifier):
    """The MNIST-1D reference CNN (Greydanus 2020, ``ConvBase``): three 1-D convolutions
    (kernel 5/3/3, stride 2, padding 1, ReLU) and a linear layer on the flattened maps.

    Args:
        in_features: sequence length (40 for MNIST-1D).
        n_classes: number of classes.
        channels: feature maps per convolution (25 in the paper).
    """

    def __init__(self, in_features: int, n_classes: int, channels: int = 25) -> None:
        super().__init__()
        if channels < 1:
            raise ConfigError("model.channels", channels, "must be an integer >= 1")
        conv = nn.Sequential(
            nn.Unflatten(1, (1, in_features)),
            nn.Conv1d(1, channels, 5, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            width = conv(torch.zeros(1, in_features)).shape[1]
        self.features = conv
        self.head = nn.Linear(width, n_classes)
