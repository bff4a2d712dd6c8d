"""The model a ``model`` node names: one of imbsweep's (:mod:`imbsweep.models`) or any importable
``nn.Module`` class or factory of your own (``model._target_=my_pkg.MyNet``) that maps a batch
of the data to logits ``[N, n_classes]``.

What the constructor is given, from the data, by the names its signature has:

- ``in_features``: the flattened input size, when it names it;
- ``n_classes`` when it names it, else ``num_classes`` (torchvision's and timm's name) when it
  names that or takes ``**kwargs`` (torchvision's builders, ``torchvision.models.resnet18``,
  pass them on to the model class);
- ``input_shape``: ``(C, H, W)`` of image data (else the shape of one example), when it names it;
- its other arguments from the node (``+model.hidden=64``). The settings of imbsweep's own model
  options (``hidden_sizes`` of ``model=mlp``, ``depth`` of ``model=resnet``, …) that it does not
  name are left out unless the user set them (:func:`_left_out`): ``model._target_=my_pkg.MyNet``
  on top of the option the data picked gives ``MyNet`` only what it takes.

Two keys act on any model, by imbsweep when the constructor does not name them:

- ``max_norm`` (MaxNorm, :meth:`~imbsweep.models.Classifier.apply_max_norm`) on its linear head;
- ``weights``: a local ``state_dict`` file loaded after construction, tensors matched by name and
  shape (the rest keep their initialisation, with a warning naming them). For a torchvision
  builder, a local file goes this way too (the builder gets ``weights=None``); its own names
  (``IMAGENET1K_V1``) go to it. Nothing is downloaded by imbsweep.

A module that is not one of imbsweep's is run on two training examples before anything is
recorded: a batch it cannot take, or logits of another shape, is a :class:`ConfigError`. When
its output is the output of its last ``nn.Linear`` with ``n_classes`` outputs (``self.fc(x)``
returned as it is, that layer called once), it is seen as ``head(features(x))``
(:class:`LinearHeadModel`) and every trick works on it. Without such a head, the tricks that act
on a linear classifier (LDAM's normalised head, ``model.max_norm``, ``stage2=crt|lws``,
``eval.taunorm_tau``) are a one-line error naming the key (:data:`HEAD_NEEDED`), the
τ-normalisation scan every run makes is skipped (no ``*_taunorm`` metrics), and the tricks that
only need logits work.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .errors import ConfigError, one_line
from .models import Classifier, check_max_norm, load_matching, read_weights

log = logging.getLogger(__name__)

#: what a trick that acts on the classifier needs, as its error says
HEAD_NEEDED = ("needs a model with a linear classifier head (an nn.Linear with n_classes outputs whose output "
               "the model returns, e.g. `return self.fc(x)`)")

#: the file suffixes that make a torchvision builder's ``weights`` a local file rather than one of its names
_WEIGHT_FILES = (".pt", ".pth", ".ckpt", ".bin")


class LinearHeadModel(Classifier):
    """A module of your own whose output is its linear classifier's, seen as ``head(features(x))``:
    ``features`` is the module with that layer replaced by ``nn.Identity``, ``head`` the layer.
    :func:`build_model` makes one when :func:`find_linear_head` finds the layer.

    Args:
        net: the module; its head is replaced in place.
        path: the head's name in ``net.named_modules()`` (``fc``, ``classifier.6``).
        max_norm: MaxNorm radius of each class's classifier weights; None: unconstrained.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> model = LinearHeadModel(net, "2")
        >>> model.head
        Linear(in_features=8, out_features=3, bias=True)
    """

    def __init__(self, net: nn.Module, path: str, max_norm: float | None = None) -> None:
        super().__init__()
        self.max_norm = check_max_norm(max_norm)
        self.path = path
        parent, leaf = _parent(net, path)
        head = parent.get_submodule(leaf)
        setattr(parent, leaf, nn.Identity())
        self.features, self.head = net, head

    def unwrap(self) -> nn.Module:
        """The module as it was built: its head put back in place, in the module itself (so this
        wrapper, whose ``features`` it is, is not to be called afterwards)."""
        parent, leaf = _parent(self.features, self.path)
        setattr(parent, leaf, self.head)
        return self.features


def _parent(net: nn.Module, path: str) -> tuple[nn.Module, str]:
    owner, _, leaf = path.rpartition(".")
    return (net.get_submodule(owner) if owner else net), leaf


@torch.no_grad()
def find_linear_head(net: nn.Module, x: torch.Tensor, n_classes: int) -> tuple[Any, str | None]:
    """``net(x)`` in eval mode, and the name of its linear classifier head: the last ``nn.Linear``
    with ``n_classes`` outputs in ``net.named_modules()``, if that layer was called once and its
    output is what ``net`` returned (None otherwise). ``net``'s training mode is restored."""
    heads = [name for name, m in net.named_modules() if name and isinstance(m, nn.Linear)
             and m.out_features == n_classes]
    calls: list[Any] = []
    layer = net.get_submodule(heads[-1]) if heads else None
    hook = layer.register_forward_hook(lambda _m, _i, out: calls.append(out)) if layer is not None else None
    was = net.training
    net.eval()
    try:
        out = net(x)
    finally:
        net.train(was)
        if hook is not None:
            hook.remove()
    found = (len(calls) == 1 and isinstance(out, torch.Tensor) and isinstance(calls[0], torch.Tensor)
             and out.shape == calls[0].shape and torch.equal(out, calls[0]))
    return out, heads[-1] if found else None


def _named(target: Any) -> tuple[set[str], bool]:
    """The argument names ``target`` takes by name, and whether it takes ``**kwargs``."""
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):  # no signature to read: it is given nothing by name
        return set(), False
    named = {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def _option_values() -> dict[str, list[Any]]:
    """The keys imbsweep's own model options set (``conf/model/*.yaml``, ``_target_`` aside), each
    with the values they set it to."""
    import yaml

    from ._paths import PACKAGE_CONF

    values: dict[str, list[Any]] = {}
    for path in sorted((PACKAGE_CONF / "model").glob("*.yaml")):
        for k, v in (yaml.safe_load(path.read_text()) or {}).items():
            if not str(k).startswith("_"):
                values.setdefault(str(k), []).append(v)
    return values


def _left_out(values: dict[str, Any], named: set[str]) -> list[str]:
    """The keys of a model option's settings that the constructor does not name and the user did
    not set: in a Hydra job, those the command line does not set; outside one (the compose API),
    where the command line is not known, those still at a value an option file gives them."""
    from hydra.core.hydra_config import HydraConfig

    from ._config import overridden

    options = _option_values()
    job = HydraConfig.initialized()
    out = []
    for k in sorted(set(values) & set(options) - named):
        user_set = overridden(f"model.{k}") if job else values[k] not in options[k]
        if not user_set:
            out.append(k)
    return out


def _is_local_file(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    p = Path(value).expanduser()
    return "/" in value or p.suffix in _WEIGHT_FILES or p.is_file()


def build_model(node: Any, ds: Any) -> nn.Module:
    """The model a ``model`` config node (or a plain dict with ``_target_``) names, for dataset
    ``ds``: the arguments it is given are in this module's docstring.

    Raises:
        ConfigError: a bad value or key; the model cannot take this kind of data
            (``Dataset.kind``) or maps it to logits of another shape; ``model.max_norm`` on a model
            without a linear classifier head.
    """
    from hydra.utils import get_object

    from .building import instantiate_checked

    if not isinstance(node, DictConfig):
        node = OmegaConf.create(dict(node))
    name = str(node.get("_target_"))
    if name.startswith("torchvision"):
        from .data import import_torchvision

        import_torchvision()  # beside a CPU torch, `import torchvision` alone fails (see there)
    try:
        target = get_object(name)
    except Exception:  # noqa: BLE001 - instantiate_checked reports a bad target
        target = None
    if target is None:
        return instantiate_checked(node, "model")  # it raises: the target does not import
    accepts = getattr(target, "accepts", None)
    if accepts is not None and ds.kind not in accepts:
        raise ConfigError("model", _choice("model", target.__name__.lower()),
                          f"takes {' or '.join(accepts)} data; data={_choice('data', ds.name)} is {ds.kind} "
                          f"data: use {_fits(ds.kind)}")
    named, var_kw = _named(target)
    runtime: dict[str, Any] = {}
    if "in_features" in named:
        runtime["in_features"] = ds.n_features
    if "n_classes" in named:
        runtime["n_classes"] = ds.n_classes
    elif "num_classes" in named or var_kw:
        runtime["num_classes"] = ds.n_classes
    if "input_shape" in named:
        runtime["input_shape"] = ds.image_shape or tuple(ds.x_train.shape[1:])
    container = OmegaConf.to_container(node, resolve=True)
    assert isinstance(container, dict)
    values: dict[str, Any] = {str(k): v for k, v in container.items()}
    builtin = getattr(target, "__module__", "") == Classifier.__module__
    max_norm = values.pop("max_norm", None) if "max_norm" not in named else None
    weights = values.get("weights")
    torchvision = str(getattr(target, "__module__", "")).startswith("torchvision.")
    local = "weights" not in named or (torchvision and _is_local_file(weights))
    if local:
        values.pop("weights", None)
    left = _left_out(values, named)
    if left:
        log.info("model: %s does not take %s (the model option's settings): left out", name, ", ".join(left))
    kept = OmegaConf.create({k: v for k, v in values.items() if k not in left})
    model: nn.Module = instantiate_checked(kept, "model", **runtime)
    if local and weights is not None:
        load_matching(model, read_weights(str(weights)), str(weights))
    if builtin:
        return model
    return _checked(model, name, ds, check_max_norm(max_norm))


def _checked(model: nn.Module, name: str, ds: Any, max_norm: float | None) -> nn.Module:
    """A module of the user's run on two training examples; seen as ``head(features(x))`` when it
    has a linear head (:func:`find_linear_head`)."""
    x = torch.as_tensor(ds.x_train[:2])
    try:
        out, path = find_linear_head(model, x, ds.n_classes)
    except Exception as exc:  # noqa: BLE001 - whatever the user's forward raises is the same bad input
        raise ConfigError("model._target_", name, f"cannot take a batch of data={ds.name} of shape "
                                                  f"{tuple(x.shape)}: {one_line(exc, 300)}") from None
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if not isinstance(out, torch.Tensor) or shape != (len(x), ds.n_classes) or not out.is_floating_point():
        raise ConfigError("model._target_", name, f"must map a batch to logits [N, n_classes={ds.n_classes}]; "
                                                  f"a batch of data={ds.name} of shape {tuple(x.shape)} gave {shape}")
    if isinstance(model, Classifier):  # a Classifier of the user's: its own features and head
        if max_norm is not None:
            model.max_norm = max_norm
        return model
    if path is not None:
        wrapped = LinearHeadModel(model, path, max_norm)
        try:
            same = _same(wrapped, x, out)
        except Exception:  # noqa: BLE001 - its forward needs the layer itself: no head to take apart
            same = False
        if same:
            return wrapped
        model = wrapped.unwrap()
    if max_norm is not None:
        raise ConfigError("model.max_norm", max_norm, f"{HEAD_NEEDED}; {name} has none")
    return model


@torch.no_grad()
def _same(model: nn.Module, x: torch.Tensor, out: torch.Tensor) -> bool:
    """``model(x)`` in eval mode is ``out`` (to float rounding); its training mode is restored."""
    was = model.training
    model.eval()
    try:
        return bool(torch.allclose(model(x), out, rtol=1e-5, atol=1e-6))
    finally:
        model.train(was)


def _choice(group: str, fallback: str) -> str:
    """The option Hydra composed for ``group`` (``cnn1d``), else ``fallback``."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        picked = HydraConfig.get().runtime.choices.get(group)
        if picked:
            return str(picked)
    return fallback


def _fits(kind: str) -> str:
    """The models that take data of ``kind``, as the user types them."""
    return {"image": "model=resnet, model=mlp or model=logreg",
            "sequence": "model=cnn1d, model=mlp or model=logreg"}.get(kind, "model=mlp or model=logreg")


__all__ = ["HEAD_NEEDED", "LinearHeadModel", "build_model", "find_linear_head"]
