"""Config checks that turn bad input into one-line :class:`ConfigError`s, and the helpers
that flatten and redact a resolved config for MLflow."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from ._stores import redact
from .building import GROUP_RUNTIME, as_node, check_groups, check_node, instantiate_checked, target_of
from .constraints import BOOLEAN, MAPPING, NULL, Constraint, Interval, ListOf, Options, Pattern, validate_section
from .errors import ConfigError
from .names import STATE_DIR

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
DIRECTIONS = ("maximize", "minimize")

# --- what the sections no class owns take (constraints as data: constraints.py) ------------
_AT_LEAST_1 = Interval(int, 1, None)
_TAU = Interval(float, 0, None)
#: ``trainer``: every key it takes
TRAINER: dict[str, list[Constraint]] = {
    "epochs": [_AT_LEAST_1], "batch_size": [_AT_LEAST_1], "seed": [Interval(int, None, None)],
    "device": [Options(*DEVICES), Pattern(r"cuda:\d+", "cuda:N")],
    "patience": [_AT_LEAST_1, NULL], "deterministic": [BOOLEAN], "eval_batch_size": [_AT_LEAST_1],
    "num_threads": [_AT_LEAST_1, NULL], "amp": [Options("auto"), BOOLEAN], "channels_last": [BOOLEAN]}
TRAINER_KEYS = tuple(TRAINER)
TRAINER_REQUIRED = ("epochs", "batch_size", "seed", "device", "eval_batch_size")
#: ``eval``: post-hoc logit adjustment and tau-normalisation (0: none)
EVAL: dict[str, list[Constraint]] = {"posthoc_tau": [_TAU], "posthoc_grid": [ListOf(_TAU)],
                                     "taunorm_tau": [_TAU], "taunorm_grid": [ListOf(_TAU)]}
EVAL_KEYS = tuple(EVAL)
METRICS: dict[str, list[Constraint]] = {"ece_bins": [_AT_LEAST_1], "shots": [MAPPING, NULL]}
SHOTS: dict[str, list[Constraint]] = {"few_below": [Interval(int, 0, None)], "many_above": [Interval(int, 0, None)]}
#: the optimizer's keys imbsweep reads or searches (its class checks the others)
OPTIMIZER: dict[str, list[Constraint]] = {"lr": [Interval(float, 0, None, "right")],
                                          "weight_decay": [Interval(float, 0, None)],
                                          "momentum": [Interval(float, 0, 1, "left")]}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


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
    check_groups(cfg)
    validate_section("trainer", cfg.trainer, TRAINER, required=TRAINER_REQUIRED)

    validate_objective(cfg)

    metrics = cfg.get("metrics") or {}
    validate_section("metrics", metrics, METRICS)
    shots = metrics.get("shots") or {}
    validate_section("metrics.shots", shots, SHOTS)
    if shots.get("few_below", 20) > shots.get("many_above", 100) + 1:
        raise ConfigError("metrics.shots.few_below", shots.get("few_below"),
                          "must be <= metrics.shots.many_above + 1")
    validate_section("eval", cfg.get("eval") or {}, EVAL)
    # the optimizer's own class (torch's) checks the rest when it is built
    validate_section("optimizer", {k: v for k, v in cfg.optimizer.items() if k in OPTIMIZER}, OPTIMIZER,
                     required=("lr",))


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


__all__ = ["GROUP_RUNTIME", "HIDDEN", "as_node", "check_choice", "check_groups", "check_node", "flatten",
           "instantiate_checked", "objective_metrics", "overridden",
           "redact_override", "redact_tree", "redacted_container", "resolve_device", "secret_key", "target_of",
           "to_yaml",
           "val_metric_names",
           "validate", "validate_batch_size",
           "validate_objective_logged", "validate_state_dir", "validate_tracking"]
