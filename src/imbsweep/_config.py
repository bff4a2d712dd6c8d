"""Config checks that turn bad input into one-line :class:`ConfigError`s, and the helpers
that flatten and redact a resolved config for MLflow."""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from ._stores import redact
from .errors import ConfigError, ImbsweepError, one_line
from .names import STATE_DIR

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
DIRECTIONS = ("maximize", "minimize")
TRAINER_KEYS = ("epochs", "batch_size", "seed", "device", "patience", "deterministic",
                "eval_batch_size", "num_threads", "amp", "channels_last")


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
        raise ConfigError(f"{key}._target_", target, f"cannot be imported ({one_line(exc, 300)})") from None
    params = inspect.signature(obj).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = [n for n, p in params.items()
                   if p.kind not in (p.VAR_POSITIONAL,) and n not in runtime and n != "self"]
        for k in node:
            if not str(k).startswith("_") and k not in params:
                takes = f"allowed: {', '.join(allowed)}" if allowed else "it takes none"
                raise ConfigError(f"{key}.{k!s}", node[k], f"not an argument of {target}; {takes}")
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
    """Check the keys that no constructor owns (state folder, tracking, trainer, objective,
    optimizer ranges).

    Group constructors check their own arguments when they are built.
    """
    validate_state_dir(cfg)
    validate_tracking(cfg)
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
    for k in ("deterministic", "channels_last"):
        if not isinstance(t.get(k, False), bool):
            raise ConfigError(f"trainer.{k}", t.get(k), "must be true or false")
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
    if not (_is_num(lr) and 0 < lr < float("inf")):
        raise ConfigError("optimizer.lr", lr, "must be a finite number > 0")
    wd = opt.get("weight_decay", 0.0)
    if not _finite_nonneg(wd):
        raise ConfigError("optimizer.weight_decay", wd, "must be a finite number >= 0")
    mom = opt.get("momentum", 0.0)
    if not (_is_num(mom) and 0 <= mom < 1):
        raise ConfigError("optimizer.momentum", mom, "must be in [0, 1)")


def validate_state_dir(cfg: DictConfig) -> None:
    """``state_dir``: a folder this process can write (created if missing), not a file."""
    from pathlib import Path

    from ._stores import check_folder

    value = cfg.get("state_dir") or STATE_DIR
    if not isinstance(value, str):
        raise ConfigError("state_dir", value, "must be a folder's path")
    check_folder("state_dir", Path(value).expanduser().resolve(), shown=value)


def validate_tracking(cfg: DictConfig) -> None:
    """``tracking.experiment`` (a name), ``tracking.connect_timeout_s`` and ``tracking.uri``:
    a URI MLflow can use and, for a server, one that answers within the timeout."""
    from ._stores import CONNECT_TIMEOUT_S, check_timeout, check_tracking_uri

    tr = cfg.get("tracking") or {}
    experiment = tr.get("experiment")  # (Hydra reads tracking.experiment=nan as a float: its name is "nan")
    if experiment is None or isinstance(experiment, bool) or not str(experiment).strip():
        raise ConfigError("tracking.experiment", experiment, "must be a non-empty name (the MLflow experiment)")
    timeout = check_timeout("tracking.connect_timeout_s", tr.get("connect_timeout_s", CONNECT_TIMEOUT_S))
    uri = tr.get("uri")
    if uri not in (None, ""):  # unset (or MLFLOW_TRACKING_URI empty): the local store
        if not isinstance(uri, str) or not uri.strip():
            raise ConfigError("tracking.uri", uri, "must be null (the local store) or an MLflow tracking URI")
        check_tracking_uri(uri, "tracking.uri", timeout)


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


def objective_metrics(cfg: Any) -> list[tuple[str, str]]:
    """``[(metric, direction), ...]``: ``objective.metrics`` if given, else the single one."""
    obj = cfg.objective
    many = obj.get("metrics")
    if many:
        return [(str(m.metric), str(m.direction)) for m in many]
    return [(str(obj.metric), str(obj.direction))]


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


def val_metric_names(cfg: DictConfig, dataset: Any) -> list[str]:
    """The ``val/…`` metrics a run of ``cfg`` on ``dataset`` logs every epoch, known before
    training: :func:`metrics.evaluate` names them from the split's labels, the class names
    and the shot groups, whatever the predictions."""
    import numpy as np

    from .metrics import ShotGroups, evaluate

    metrics = cfg.get("metrics") or {}
    n = len(dataset.class_names)
    uniform = np.full((len(dataset.y_val), n), 1.0 / n)
    ev = evaluate(uniform, np.asarray(dataset.y_val), dataset.train_class_counts, dataset.class_names, "val",
                  ShotGroups(**(metrics.get("shots") or {})), int(metrics.get("ece_bins", 15)))
    return list(ev.metrics)


def _shown_metrics(names: list[str]) -> str:
    """Metric names for a message: the per-class ones folded into ``val/recall/<class>``."""
    per_class = [m for m in names if m.count("/") > 1]
    plain = [m for m in names if m.count("/") <= 1]
    if per_class:
        plain.append("val/recall/<class>, val/precision/<class> (classes: "
                     + ", ".join(dict.fromkeys(m.rsplit("/", 1)[1] for m in per_class)) + ")")
    return ", ".join(plain)


def validate_objective_logged(cfg: DictConfig, dataset: Any) -> None:
    """``objective.metric`` (and each of ``objective.metrics``) is a metric a run on
    ``dataset`` logs: found before any training, not after the first epoch."""
    from .metrics import HEADLINE

    logged = val_metric_names(cfg, dataset)
    o = cfg.objective
    if o.get("metric") not in logged:
        raise ConfigError("objective.metric", o.get("metric"),
                          f"is not a metric this run logs; it logs: {_shown_metrics(logged)}")
    # after training, each run also logs the headline metrics after its post-hoc scans
    twins = [f"val/{h}_{kind}" for kind in ("posthoc", "taunorm") for h in HEADLINE]
    for i, item in enumerate(o.get("metrics") or []):
        if item["metric"] not in logged and item["metric"] not in twins:
            raise ConfigError(f"objective.metrics[{i}].metric", item["metric"],
                              f"is not a metric this run logs; it logs: {_shown_metrics(logged)}, "
                              "and val/<headline>_posthoc, val/<headline>_taunorm")


def validate_batch_size(batch_size: Any, dataset: Any, key: str = "trainer.batch_size",
                        explicit: bool = True) -> None:
    """A batch no larger than the training split: one that is larger would silently be the
    whole split, so a value the user gave is an error; the config's default (128 on a
    table of 100 rows) is a warning."""
    n = len(dataset.y_train)
    if not (_is_int(batch_size) and batch_size > n):
        return
    name = getattr(dataset, "name", "this data")
    if explicit:
        raise ConfigError(key, batch_size, f"must be <= {n}, the size of the training split of {name} "
                          "(one batch would be the whole split)")
    log.warning("%s=%s (the default) is more than the %d examples of the training split of %s: each epoch is "
                "one batch of all of them; set %s lower for smaller steps", key, batch_size, n, name, key)


def overridden(key: str) -> bool:
    """Whether the command line of this Hydra job sets ``key`` (``key=``, ``+key=``, ``++key=``);
    False outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    task = HydraConfig.get().overrides.task or []
    return any(str(o).lstrip("+").partition("=")[0] == key for o in task)


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

HIDDEN = "***"  # what a credential is recorded as
#: the words of a key's name that make its value a credential (``db_password``, ``apiToken``,
#: ``api_key``); ``max_tokens`` or ``tokenizer`` are not
_SECRET_WORDS = frozenset({"password", "passwd", "pwd", "secret", "token", "apikey", "credential", "credentials"})


def secret_key(key: str) -> bool:
    """Whether a config key's last component names a credential, word by word (``_ - .``,
    camelCase): its value is never recorded."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(key).rsplit(".", 1)[-1]).lower()
    words = [w for w in re.split(r"[_\-\s]+", name) if w]
    pairs = {a + b for a, b in zip(words, words[1:], strict=False)}  # api_key, access_token...
    return bool(_SECRET_WORDS & (set(words) | pairs))


def redact_tree(node: Any) -> Any:
    """Plain containers with credentials hidden: the value of a key that names one
    (``password``, ``token``, ``api_key``, …) and the password of a URL."""
    if isinstance(node, Mapping):
        return {k: (HIDDEN if secret_key(str(k)) and v is not None else redact_tree(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [redact_tree(v) for v in node]
    return redact(node)


def redact_override(text: str) -> str:
    """A Hydra override (``key=value``) with its value hidden when its key names a credential,
    and any URL's password hidden."""
    key, eq, _ = text.partition("=")
    if eq and secret_key(key.lstrip("+~")):
        return f"{key}={HIDDEN}"
    return str(redact(text))


def redacted_container(cfg: DictConfig, resolve: bool = True) -> dict[str, Any]:
    """The config (resolved) as plain containers, with credentials hidden."""
    out = redact_tree(OmegaConf.to_container(cfg, resolve=resolve))
    assert isinstance(out, dict)
    return out


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


__all__ = ["HIDDEN", "check_choice", "flatten", "instantiate_checked", "objective_metrics", "overridden",
           "redact_override", "redact_tree", "redacted_container", "resolve_device", "secret_key", "to_yaml",
           "val_metric_names",
           "validate", "validate_batch_size",
           "validate_objective_logged", "validate_state_dir", "validate_tracking"]
