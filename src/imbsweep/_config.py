"""Config checks that turn bad input into one-line :class:`ConfigError`s, and the helpers
that flatten and redact a resolved config for MLflow."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from .errors import ConfigError, ImbsweepError

DEVICES = ("auto", "cpu", "cuda")
DIRECTIONS = ("maximize", "minimize")
TRAINER_KEYS = ("epochs", "batch_size", "seed", "device", "patience", "deterministic",
                "eval_batch_size", "num_threads", "amp")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def instantiate_checked(node: DictConfig, key: str, **runtime: Any) -> Any:
    """``hydra.utils.instantiate`` with the group's keys checked against the target's
    signature first, and construction errors reported against the config key.

    Args:
        node: a config node with ``_target_``.
        key: its dotted location (``model``), used in error messages.
        **runtime: arguments only known at run time (``in_features=...``).
    """
    from hydra.errors import InstantiationException
    from hydra.utils import get_object, instantiate

    target = node.get("_target_")
    if not target:
        raise ConfigError(f"{key}._target_", target, "must name a class or function")
    try:
        obj = get_object(target)
    except Exception as exc:  # noqa: BLE001 - any import failure is a bad _target_
        raise ConfigError(f"{key}._target_", target, f"cannot be imported ({exc})") from None
    params = inspect.signature(obj).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = [n for n, p in params.items()
                   if p.kind not in (p.VAR_POSITIONAL,) and n not in runtime and n != "self"]
        for k in node:
            if not str(k).startswith("_") and k not in params:
                raise ConfigError(f"{key}.{k!s}", node[k],
                                  f"not an argument of {target}; allowed: {', '.join(allowed)}")
    try:
        return instantiate(node, **runtime)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, ImbsweepError):
            raise cause from None
        raise ConfigError(key, OmegaConf.to_container(node), str(cause or exc)) from None


def check_choice(key: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(key, value, f"must be one of {', '.join(options)}")


def validate(cfg: DictConfig) -> None:
    """Check the keys that no constructor owns (trainer, objective, optimizer ranges).

    Group constructors check their own arguments when they are built.
    """
    t = cfg.trainer
    for k in t:
        if k not in TRAINER_KEYS:
            raise ConfigError(f"trainer.{k}", t[k], f"unknown key; allowed: {', '.join(TRAINER_KEYS)}")
    for k in ("epochs", "batch_size", "eval_batch_size"):
        if not (_is_int(t.get(k)) and t[k] >= 1):
            raise ConfigError(f"trainer.{k}", t.get(k), "must be an integer >= 1")
    if not _is_int(t.get("seed")):
        raise ConfigError("trainer.seed", t.get("seed"), "must be an integer")
    if t.get("patience") is not None and not (_is_int(t.patience) and t.patience >= 1):
        raise ConfigError("trainer.patience", t.patience, "must be null (no early stopping) or an integer >= 1")
    if t.get("num_threads") is not None and not (_is_int(t.num_threads) and t.num_threads >= 1):
        raise ConfigError("trainer.num_threads", t.num_threads, "must be null (torch's default) or an integer >= 1")
    if not isinstance(t.get("deterministic"), bool):
        raise ConfigError("trainer.deterministic", t.get("deterministic"), "must be true or false")
    dev = t.get("device")
    if not (dev in DEVICES or (isinstance(dev, str) and re.fullmatch(r"cuda:\d+", dev))):
        raise ConfigError("trainer.device", dev, "must be one of auto, cpu, cuda, cuda:N")

    validate_objective(cfg)

    metrics = cfg.get("metrics") or {}
    shots = metrics.get("shots") or {}
    for k in shots:
        if k not in ("few_below", "many_above"):
            raise ConfigError(f"metrics.shots.{k!s}", shots[k], "unknown key; allowed: few_below, many_above")
        if not (_is_int(shots[k]) and shots[k] >= 0):
            raise ConfigError(f"metrics.shots.{k!s}", shots[k], "must be an integer >= 0 (training examples)")
    if shots.get("few_below", 20) > shots.get("many_above", 100) + 1:
        raise ConfigError("metrics.shots.few_below", shots.get("few_below"),
                          "must be <= metrics.shots.many_above + 1")
    bins = metrics.get("ece_bins", 15)
    if not (_is_int(bins) and bins >= 1):
        raise ConfigError("metrics.ece_bins", bins, "must be an integer >= 1")

    validate_eval(cfg.get("eval") or {})

    opt = cfg.optimizer
    lr = opt.get("lr")
    if not (_is_num(lr) and lr > 0):
        raise ConfigError("optimizer.lr", lr, "must be a number > 0")
    wd = opt.get("weight_decay", 0.0)
    if not (_is_num(wd) and wd >= 0):
        raise ConfigError("optimizer.weight_decay", wd, "must be a number >= 0")
    mom = opt.get("momentum", 0.0)
    if not (_is_num(mom) and 0 <= mom < 1):
        raise ConfigError("optimizer.momentum", mom, "must be in [0, 1)")


EVAL_KEYS = ("posthoc_tau", "posthoc_grid", "taunorm_tau", "taunorm_grid")


def _finite_nonneg(v: Any) -> bool:
    return _is_num(v) and 0 <= v < float("inf")


def validate_eval(ev: Any) -> None:
    """``eval.posthoc_tau`` and ``eval.taunorm_tau`` (>= 0), ``eval.posthoc_grid`` and
    ``eval.taunorm_grid`` (non-empty lists of taus >= 0)."""
    for k in ev:
        if k not in EVAL_KEYS:
            raise ConfigError(f"eval.{k!s}", ev[k], f"unknown key; allowed: {', '.join(EVAL_KEYS)}")
    for kind in ("posthoc", "taunorm"):
        tau = ev.get(f"{kind}_tau", 0.0)
        if not _finite_nonneg(tau):
            raise ConfigError(f"eval.{kind}_tau", tau, "must be a finite number >= 0 (0: no adjustment)")
        grid = ev.get(f"{kind}_grid", [0.0])
        if not isinstance(grid, list | ListConfig) or not grid or not all(_finite_nonneg(g) for g in grid):
            raise ConfigError(f"eval.{kind}_grid", grid, "must be a non-empty list of numbers >= 0")


def validate_objective(cfg: DictConfig) -> None:
    """``objective.metric``/``direction`` and, for several objectives, ``objective.metrics``."""
    o = cfg.objective
    metric = o.get("metric")
    if not (isinstance(metric, str) and metric.startswith("val/")):
        raise ConfigError("objective.metric", metric,
                          "must be a validation metric such as val/balanced_acc "
                          "(the test split is only reported, never optimized)")
    check_choice("objective.direction", o.get("direction"), DIRECTIONS)
    many = o.get("metrics")
    if many is not None:
        if not isinstance(many, list | ListConfig) or not many:
            raise ConfigError("objective.metrics", many, "must be null or a list of {metric, direction}")
        for i, item in enumerate(many):
            if not isinstance(item, dict | DictConfig) or set(item) != {"metric", "direction"}:
                raise ConfigError(f"objective.metrics[{i}]", item, "must be {metric: val/..., direction: ...}")
            if not str(item["metric"]).startswith("val/"):
                raise ConfigError(f"objective.metrics[{i}].metric", item["metric"],
                                  "must be a validation metric (val/...)")
            check_choice(f"objective.metrics[{i}].direction", item["direction"], DIRECTIONS)


def resolve_device(requested: str) -> str:
    """``auto`` picks CUDA when torch finds it; asking for CUDA without it is an error."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("trainer.device", requested,
                          "CUDA is not available on this machine; use auto or cpu")
    return requested


# --- flattening and redaction for MLflow -------------------------------------------------

_SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_?key|credential)", re.I)
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<pw>[^@/\s]+)(?P<at>@)")


def redact(value: Any) -> Any:
    """Hide the password of ``scheme://user:password@host`` URLs inside a string."""
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\g<head>***\g<at>", value)
    return value


def redacted_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain containers, with credentials hidden."""

    def walk(node: Any, key: str = "") -> Any:
        if isinstance(node, Mapping):
            return {k: ("***" if _SECRET_KEY.search(str(k)) and v is not None else walk(v, k))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return redact(node)

    return walk(OmegaConf.to_container(cfg, resolve=True))


def flatten(container: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``("optimizer.lr", "0.005")`` pairs; lists stay one value (``[256, 256]``)."""
    for k, v in container.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            yield from flatten(v, key + ".")
        else:
            yield key, str(v)


class _YamlDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """libyaml's safe dumper (~15x faster than OmegaConf's pure-Python one, which cost 3.5 ms
    of every recorded run) that quotes strings OmegaConf would read back as something else:
    besides what YAML 1.1 resolves, OmegaConf reads ``1e-3`` and ``inf`` as floats."""


def _represent_str(dumper: yaml.SafeDumper, s: str) -> yaml.ScalarNode:
    try:
        float(s)  # quoting more than needed is harmless
        quote = True
    except ValueError:
        quote = False
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="'" if quote else None)


_YamlDumper.add_representer(str, _represent_str)


def to_yaml(container: Mapping[str, Any]) -> str:
    """A resolved config as the YAML ``OmegaConf.load`` reads back to the same values."""
    return str(yaml.dump(dict(container), Dumper=_YamlDumper, sort_keys=False, allow_unicode=True))


__all__ = ["check_choice", "flatten", "instantiate_checked", "redact",
           "redacted_container", "resolve_device", "to_yaml", "validate"]
