"""Classifiers. Each is ``features -> head``; ``head`` is a plain ``nn.Linear`` so that a loss
that needs another classifier (LDAM's normalised one) or a second stage (classifier
re-training, :mod:`imbsweep.decoupling`) can replace it.

Config files (``conf/model/*.yaml``) hold ``_target_`` plus the constructor's arguments;
``in_features`` and ``n_classes`` come from the data at run time
(:func:`imbsweep.own_models.build_model`, which builds a model of your own too). ``max_norm``
(every model) is the MaxNorm constraint of weight balancing (Alshammari et al. 2022): after
each optimizer step, every class's weight row of the classifier is projected back onto the ball
of that radius (:meth:`Classifier.apply_max_norm`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import nn

from .constraints import NULL, TEXT, Constraint, Interval, ListOf, Options, check, checked
from .errors import ConfigError

#: ``model.max_norm``: the largest norm of a class's classifier weights (MaxNorm), or null (off)
MAX_NORM: list[Constraint] = [Interval(float, 0, None, "right"), NULL]


def check_max_norm(max_norm: float | None) -> float | None:
    """``model.max_norm``: null (off) or a finite number > 0."""
    check("model.max_norm", max_norm, MAX_NORM)
    return None if max_norm is None else float(max_norm)


def classifier_weight_name(head: nn.Module) -> str | None:
    """The name, inside ``head``, of its per-class weight matrix ``[C, d]`` (``weight`` for a
    linear or normalised head, ``base.weight`` under LWS scales); None when it has none."""
    if isinstance(head, ScaledHead):
        inner = classifier_weight_name(head.base)
        return None if inner is None else f"base.{inner}"
    w = getattr(head, "weight", None)
    return "weight" if isinstance(w, nn.Parameter) and w.dim() == 2 else None


def max_norm_(weight: torch.Tensor, max_norm: float) -> None:
    """Project every row of ``weight`` onto the L2 ball of radius ``max_norm``, in place:
    ``w_c <- w_c * min(1, max_norm / ||w_c||)`` (rows inside the ball are left as they are)."""
    with torch.no_grad():
        norms = weight.norm(dim=1, keepdim=True)
        weight.mul_((max_norm / norms.clamp(min=1e-12)).clamp(max=1.0))


class Classifier(nn.Module):
    """``head(features(x))``."""

    features: nn.Module
    head: nn.Module
    #: the kinds of data (``Dataset.kind``) the model takes; None: any, flattened
    accepts: ClassVar[tuple[str, ...] | None] = None
    max_norm: float | None = None
    _parameter_constraints: ClassVar[Mapping[str, Sequence[Constraint]]] = {"max_norm": MAX_NORM}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def apply_max_norm(self) -> None:
        """MaxNorm (Alshammari et al. 2022, projected gradient descent): cap every class's
        classifier weight norm at ``max_norm``; the bias is not constrained, as in their code.
        Called after each optimizer step; does nothing when ``max_norm`` is None or the
        classifier's weights are frozen."""
        bound, name = self.max_norm, classifier_weight_name(self.head)
        if bound is None or name is None:
            return
        weight = self.head.get_parameter(name)
        if weight.requires_grad:
            max_norm_(weight, bound)


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
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The initialisation of Cao et al.'s code (used again by classifier re-training)."""
        with torch.no_grad():
            self.weight.uniform_(-1, 1).renorm_(2, 0, 1e-5).mul_(1e5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * nn.functional.normalize(x, dim=1) @ nn.functional.normalize(self.weight, dim=1).T


class ScaledHead(nn.Module):
    """Learnable weight scaling (LWS, Kang et al. 2020): ``scales * base(x)``, one scale per
    class (initialised to 1) on a frozen classifier; its bias is scaled too, as in their code.

    Args:
        base: the trained classifier; its parameters are frozen here.
    """

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        out = getattr(base, "out_features", None)
        if not isinstance(out, int):
            raise TypeError(f"{type(base).__name__} has no out_features")
        self.scales = nn.Parameter(torch.ones(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) * self.scales


class LogisticRegression(Classifier):
    """Multinomial logistic regression: one linear layer on the flattened input.

    Args:
        in_features: flattened input size.
        n_classes: number of classes.
        max_norm: MaxNorm radius of each class's weights; None: unconstrained.
    """

    def __init__(self, in_features: int, n_classes: int, max_norm: float | None = None) -> None:
        super().__init__()
        self.max_norm = check_max_norm(max_norm)
        self.features = nn.Flatten()
        self.head = nn.Linear(in_features, n_classes)


@checked("model")
class MLP(Classifier):
    """Fully connected ReLU network.

    Args:
        in_features: flattened input size.
        n_classes: number of classes.
        hidden_sizes: width of each hidden layer.
        dropout: dropout probability after each hidden layer, in [0, 1).
        max_norm: MaxNorm radius of each class's weights; None: unconstrained.
    """

    _parameter_constraints = {"hidden_sizes": [ListOf(Interval(int, 1, None))],
                              "dropout": [Interval(float, 0, 1, "left")]}

    def __init__(self, in_features: int, n_classes: int,
                 hidden_sizes: Sequence[int] = (256, 256), dropout: float = 0.0,
                 max_norm: float | None = None) -> None:
        super().__init__()
        self.max_norm = check_max_norm(max_norm)
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden_sizes:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = int(h)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)


@checked("model")
class CNN1D(Classifier):
    """The MNIST-1D reference CNN (Greydanus 2020, ``ConvBase``): three 1-D convolutions
    (kernel 5/3/3, stride 2, padding 1, ReLU) and a linear layer on the flattened maps.

    Args:
        in_features: sequence length (40 for MNIST-1D).
        n_classes: number of classes.
        channels: feature maps per convolution (25 in the paper).
        max_norm: MaxNorm radius of each class's weights; None: unconstrained.
    """

    accepts: ClassVar[tuple[str, ...] | None] = ("sequence",)
    _parameter_constraints = {"channels": [Interval(int, 1, None)]}

    def __init__(self, in_features: int, n_classes: int, channels: int = 25,
                 max_norm: float | None = None) -> None:
        super().__init__()
        self.max_norm = check_max_norm(max_norm)
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


# --- image models ---------------------------------------------------------------------------

RESNET_ARCHS = ("resnet32", "resnet18")


class _AsImage(nn.Module):
    """Views each example as ``shape`` (``C, H, W``): image data may be stored flat."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), *self.shape)


class _BasicBlock(nn.Module):
    """The CIFAR ResNet's basic block (He et al. 2016, sec. 4.2) with the parameter-free
    shortcut (option A): subsample by the stride, zero-pad the new channels."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride, self.extra = stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x[:, :, ::self.stride, ::self.stride] if self.stride != 1 else x
        if self.extra:
            short = nn.functional.pad(short, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return nn.functional.relu(out + short)


@checked("model")
class ResNet(Classifier):
    """ResNets for small images, trained from scratch.

    ``resnet32`` (default): the CIFAR ResNet of He et al. 2016 (sec. 4.2) that the long-tail
    papers report on (Cao et al. 2019's LDAM-DRW code): a 3x3 stem, three stages of
    ``(depth - 2) / 6`` basic blocks with ``width``, 2x and 4x channels (16/32/64), the
    parameter-free shortcut, global average pooling, Kaiming-normal initialisation; depth 32
    has 0.46M parameters. ``resnet18``: torchvision's ResNet-18 adapted to small images (a
    3x3 stride-1 stem, no max-pooling), as CIFAR work does.

    Args:
        in_features: flattened input size (from the data).
        n_classes: number of classes (from the data).
        input_shape: ``(C, H, W)`` of one image (from the data).
        arch: ``resnet32`` or ``resnet18``.
        depth: ``resnet32``'s depth, ``6n + 2`` (20, 32, 44, 56, 110).
        width: ``resnet32``'s first stage channels.
        weights: a local file of weights (a ``state_dict``, torchvision's ResNet-18 file or one
            saved from this model); layers whose shapes differ (the classifier for another class
            count, an ImageNet stem) keep their initialisation, with a warning naming them.
            Nothing is downloaded.
        max_norm: MaxNorm radius of each class's classifier weights; None: unconstrained.
    """

    accepts: ClassVar[tuple[str, ...] | None] = ("image",)
    _parameter_constraints = {"arch": [Options(*RESNET_ARCHS)], "width": [Interval(int, 1, None)],
                              "weights": [TEXT, NULL]}

    def __init__(self, in_features: int, n_classes: int, input_shape: Sequence[int] | None = None,
                 arch: str = "resnet32", depth: int = 32, width: int = 16, weights: str | None = None,
                 max_norm: float | None = None) -> None:
        super().__init__()
        self.max_norm = check_max_norm(max_norm)
        if not (isinstance(depth, int) and depth >= 8 and (depth - 2) % 6 == 0):
            raise ConfigError("model.depth", depth, "must be 6n + 2 (20, 32, 44, 56, 110)")
        if input_shape is None or len(input_shape) != 3:
            raise ConfigError("model", "resnet", f"needs images (C, H, W); the data give {input_shape}")
        shape = tuple(int(s) for s in input_shape)
        if arch == "resnet32":
            n = (depth - 2) // 6
            stem = [nn.Conv2d(shape[0], width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            blocks: list[nn.Module] = []
            c = width
            for stage, stride in enumerate((1, 2, 2)):
                out = width * 2 ** stage
                for b in range(n):
                    blocks.append(_BasicBlock(c, out, stride if b == 0 else 1))
                    c = out
            self.features = nn.Sequential(_AsImage(shape), *stem, *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(c, n_classes)
            for m in self.modules():  # as the LDAM-DRW code's _weights_init
                if isinstance(m, nn.Conv2d | nn.Linear):
                    nn.init.kaiming_normal_(m.weight)
        else:
            from .data import import_torchvision

            tv = import_torchvision().models.resnet18(weights=None, num_classes=n_classes)
            tv.conv1 = nn.Conv2d(shape[0], 64, 3, 1, 1, bias=False)
            tv.maxpool = nn.Identity()
            if weights is not None and not _own_keys(read_weights(weights)):
                load_matching(tv, read_weights(weights), weights)
                weights = None
            self.features = nn.Sequential(_AsImage(shape), tv.conv1, tv.bn1, tv.relu, tv.maxpool, tv.layer1,
                                          tv.layer2, tv.layer3, tv.layer4, tv.avgpool, nn.Flatten())
            self.head = tv.fc
        if weights is not None:
            load_matching(self, read_weights(weights), weights)


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """A state dict from a local file (``{"state_dict": ...}`` and ``module.`` prefixes allowed).

    Raises:
        ConfigError: no such file, not a PyTorch file, or not a state dict (key ``model.weights``).
    """
    from pathlib import Path

    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError("model.weights", path, f"no such file (looked in {Path.cwd()}); nothing is downloaded")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same bad input
        raise ConfigError("model.weights", path, f"not a PyTorch weights file ({exc})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError("model.weights", path, "must hold a state_dict (parameter name -> tensor)")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def _own_keys(state: dict[str, torch.Tensor]) -> bool:
    """Saved from this model (``features.*``/``head.*``) rather than from torchvision's."""
    return any(k.startswith(("features.", "head.")) for k in state)


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], path: str) -> None:
    """Load into ``module`` the tensors of ``state`` whose name and shape match; warn about the
    rest, by name (``path``: the file, for the messages).

    Raises:
        ConfigError: no tensor matches (key ``model.weights``).
    """
    import logging

    own = module.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fits:
        raise ConfigError("model.weights", path, "no tensor in it matches this model (another architecture?)")
    module.load_state_dict(fits, strict=False)
    skipped = sorted(set(state) - set(fits))
    kept = sorted(set(own) - set(fits))
    if skipped or kept:
        logging.getLogger(__name__).warning(
            "model.weights=%s: %d tensors loaded; not loaded (name or shape differ): %s; left at their "
            "initialisation: %s", path, len(fits), ", ".join(skipped) or "none", ", ".join(kept) or "none")


__all__ = ["CNN1D", "MLP", "RESNET_ARCHS", "Classifier", "LogisticRegression", "NormedLinear", "ResNet", "ScaledHead",
           "check_max_norm", "classifier_weight_name", "load_matching", "max_norm_", "read_weights"]
