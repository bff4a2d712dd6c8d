"""The one way a config group becomes an object: ``_target_`` plus constructor arguments,
checked against the target's signature and its declared constraints (constraints.py) before
it is built, errors on one line naming the key.

Every group (``data``, ``model``, ``loss``, ``resampling``, ``augment``, ``stage2``,
``optimizer``, ``scheduler``) is written this way; what only the run knows (the class counts,
the number of epochs) is passed at build time, never written in a config. A plain mapping is
built without Hydra (the losses and samplers in a training loop of one's own import neither
Hydra nor OmegaConf); a composed config node goes through ``hydra.utils.instantiate`` (nested
targets, ``_partial_``)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Collection, Mapping
from typing import Any

from .constraints import is_config, plain, validate
from .errors import ConfigError, ImbsweepError, one_line

#: each group built from a ``_target_`` and what the run gives it (checked before any data is read)
GROUP_RUNTIME: dict[str, tuple[str, ...]] = {
    "loss": ("class_counts", "epochs"), "resampling": ("labels", "epochs"), "augment": ("class_counts", "seed"),
    "stage2": (), "optimizer": ("params",), "scheduler": ("optimizer", "total_steps", "steps_per_epoch")}


def target_of(cls: type) -> str:
    """The ``_target_`` that names ``cls`` where its package exports it
    (``imbsweep.losses.LDAM``, not ``imbsweep.losses._ldam.LDAM``)."""
    return f"{cls.__module__.rsplit('._', 1)[0]}.{cls.__qualname__}"


def by_name(node: Any, key: str, registry: Mapping[str, type]) -> Any:
    """A group given by its short name, ``"focal"`` or ``{"name": "focal", **arguments}`` (an
    app's own config), as ``{"_target_": <its class>, **arguments}``; a node with ``_target_`` as
    it is. An unknown name is a ConfigError listing ``registry``'s names, in its order."""
    if isinstance(node, str):
        node = {"name": node}
    if "_target_" in node or "name" not in node:
        return node
    arguments = {str(k): node[k] for k in node}
    name = arguments.pop("name")
    if name not in registry:
        raise ConfigError(f"{key}.name" if arguments or not isinstance(name, str) else key, name,
                          f"must be one of {', '.join(registry)}")
    return {"_target_": target_of(registry[name]), **arguments}


def import_target(path: str) -> Any:
    """The object a dotted path names (``pkg.module.Class``, ``pkg.module.Class.method``), as
    Hydra's ``get_object`` finds it."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as exc:
            if exc.name is not None and not ".".join(parts[:cut]).startswith(exc.name):
                raise  # a module that exists failed to import one of its own
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(f"No module named {parts[0]!r}")


def _arguments(node: Any) -> dict[str, Any]:
    """The node's own keys and values (interpolations resolved), ``_target_`` and the like left out."""
    return {str(k): v for k, v in plain(node).items() if not str(k).startswith("_")}


def as_node(node: Any, key: str) -> Any:
    """``node`` if it is a mapping or a config node, else a one-line error."""
    if not (is_config(node) or isinstance(node, Mapping)) or type(node).__name__ == "ListConfig":
        raise ConfigError(key, node, "must be a config group with _target_ (a class) and its arguments")
    return node


def check_node(node: Any, key: str, at_run_time: Collection[str] = (), keys: bool = True) -> Any:
    """What a group's node names, checked without building it: ``_target_`` imports, no key is
    one given at run time, each key is an argument of the target (``keys``) and each value is
    one its declarations take (constraints.py). Returns the target.

    Raises:
        ConfigError: the first of these that fails, on one line.
    """
    target = node.get("_target_")
    if not target:
        raise ConfigError(f"{key}._target_", target, "must name a class or function")
    try:
        obj = import_target(str(target))
    except Exception as exc:  # noqa: BLE001 - any import failure is a bad _target_
        raise ConfigError(f"{key}._target_", target, f"cannot be imported ({one_line(exc, 300)})") from None
    params = inspect.signature(obj).parameters
    for k in node:
        if str(k) in at_run_time:
            raise ConfigError(f"{key}.{k!s}", node[k], "is given at run time (from the data and the trainer); "
                                                      "leave it out of the config")
    if keys and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = [n for n, p in params.items()
                   if p.kind is not p.VAR_POSITIONAL and n not in at_run_time and n != "self"]
        for k in node:
            if not str(k).startswith("_") and k not in params:
                takes = f"allowed: {', '.join(allowed)}" if allowed else "it takes none"
                if str(k) == "name":  # the group's option is chosen by the group itself
                    takes += f"; to choose another option: {key}=<option>"
                raise ConfigError(f"{key}.{k!s}", node[k], f"not an argument of {target}; {takes}")
    validate(obj, _arguments(node), key)
    return obj


def instantiate_checked(node: Any, key: str, *, offer: Mapping[str, Any] | None = None, **runtime: Any) -> Any:
    """Build the object a group's node describes, checked first (:func:`check_node`), with
    construction errors reported against the config key.

    Args:
        node: a config node or mapping with ``_target_``.
        key: its dotted location (``model``), used in error messages.
        offer: run-time arguments passed only where the target takes them (``class_counts``
            to a loss of one's own that needs none).
        **runtime: arguments only known at run time (``in_features=...``), always passed.
    """
    node = as_node(node, key)
    obj = check_node(node, key, {**(offer or {}), **runtime})
    params = inspect.signature(obj).parameters
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    taken = {k: v for k, v in (offer or {}).items() if var_kw or k in params}
    if not is_config(node):  # a plain mapping: built here (no Hydra in a loop of one's own)
        try:
            return obj(**_arguments(node), **taken, **runtime)
        except ImbsweepError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(key, dict(node), str(exc)) from None
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    try:
        return instantiate(node, **taken, **runtime)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, ImbsweepError):
            raise cause from None
        raise ConfigError(key, OmegaConf.to_container(node), str(cause or exc)) from None


def check_groups(cfg: Any) -> None:
    """Every trick group, the optimizer and the scheduler checked against what their targets
    take, and the model's values against its declarations (a model of one's own may be given
    keys it does not take: they are left out, see own_models), before any data is read."""
    for group, at_run_time in GROUP_RUNTIME.items():
        node = cfg.get(group)
        if node is not None:
            check_node(as_node(node, group), group, at_run_time)
    model = cfg.get("model")
    if model is not None and model.get("_target_") and not str(model._target_).startswith("torchvision"):
        check_node(as_node(model, "model"), "model", keys=False)


__all__ = ["GROUP_RUNTIME", "as_node", "by_name", "check_groups", "check_node", "import_target", "instantiate_checked",
           "target_of"]
