"""The trick label: the part of a config that handles imbalance, derived, never typed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: short column names of searched keys (other keys: their last segment)
SHORT_KEYS = {"optimizer.lr": "lr", "trainer.batch_size": "batch", "loss.label_smoothing": "smoothing",
              "stage2.lr": "stage2_lr", "stage2.epochs": "stage2_epochs"}


def short_key(key: str, extra: dict[str, str] | None = None) -> str:
    """``optimizer.lr`` -> ``lr``, ``loss.gamma`` -> ``gamma``."""
    return {**SHORT_KEYS, **(extra or {})}.get(key, key.rsplit(".", 1)[-1])


def short_number(value: float) -> str:
    """3 significant digits, or up to 6 when that writes the value exactly: a searched
    ``beta`` of 0.9999 reads 0.9999, not 1; a sampled learning rate reads 0.0137."""
    for digits in range(3, 7):
        text = f"{value:.{digits}g}"
        if float(text) == value:
            return text
    return f"{value:.3g}"


#: the groups whose option is a trick (its ``_target_`` names it, by the class's ``name``)
TRICK_GROUPS = ("loss", "resampling", "augment", "stage2")


def family(node: Any) -> str:
    """A trick group's short name (``ldam``, ``sqrt``, ``crt``, ``none``): the ``name`` of the
    class its ``_target_`` names, else the class's name in snake case (``MyLoss`` ->
    ``my_loss``); ``none`` for no node. Records made before the groups had ``_target_`` say
    ``name``.

    Example:
        >>> family({"_target_": "imbsweep.losses.LDAM", "max_m": 0.5})
        'ldam'
    """
    if not node:
        return "none"
    target = node.get("_target_")
    if not target:
        return str(node.get("name", "none"))
    from .building import import_target

    try:
        name = getattr(import_target(str(target)), "name", None)
    except Exception:  # noqa: BLE001 - a target that does not import is reported where it is built
        name = None
    if isinstance(name, str) and name:
        return name
    last = str(target).rsplit(".", 1)[-1]
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", last).lower()


def trick_names(container: Mapping[str, Any]) -> dict[str, str]:
    """``{"loss.name": "ldam", "stage2.name": "crt", …}`` for the trick groups a config has: the
    short names a run records beside their ``_target_`` (the MLflow UI filters on them)."""
    return {f"{g}.name": family(container[g]) for g in TRICK_GROUPS
            if isinstance(container.get(g), Mapping) and container[g].get("_target_")}


def trick_label(cfg: Any) -> str:
    """``loss`` family, then ``+w=<scheme>`` for class weights (``+drw`` when they are
    deferred past epoch 1), ``+rs=<sampler>`` for resampling, ``+mixup`` / ``+remix`` for batch
    mixing (alpha > 0), ``+maxnorm`` for a MaxNorm bound on the classifier, ``+crt`` / ``+lws``
    for classifier re-training, ``+posthoc`` for post-hoc logit adjustment and ``+taunorm`` for
    tau-normalisation when present. Knobs of the trick (gamma, tau, margins) are not part of it.

    Example:
        >>> trick_label({"loss": {"_target_": "imbsweep.losses.CrossEntropy", "class_weights": "inverse"}})
        'ce+w=inverse'
        >>> trick_label({"loss": {"_target_": "imbsweep.losses.CrossEntropy"},
        ...              "augment": {"_target_": "imbsweep.augment.Remix", "alpha": 1.0},
        ...              "stage2": {"_target_": "imbsweep.decoupling.CRT"}})
        'ce+remix+crt'
    """
    loss = cfg["loss"]
    parts = [family(loss)]
    scheme = loss.get("class_weights", "none")
    if scheme not in (None, "none"):
        parts.append(f"w={scheme}")
        # from epoch 1 (or fraction 0) is plain weighting
        if (loss.get("reweight_from_epoch") or 1) > 1 or (loss.get("reweight_from_fraction") or 0) > 0:
            parts.append("drw")
    resampling = family(cfg.get("resampling"))
    if resampling not in (None, "none"):
        parts.append(f"rs={resampling}")
    augment = cfg.get("augment") or {}
    if family(augment) != "none" and augment.get("alpha", 1.0):  # alpha 0: no mixing
        parts.append(family(augment))
    if (cfg.get("model") or {}).get("max_norm") is not None:
        parts.append("maxnorm")
    stage2 = family(cfg.get("stage2"))
    if stage2 not in (None, "none"):
        parts.append(str(stage2))
    ev = cfg.get("eval") or {}
    if ev.get("posthoc_tau"):
        parts.append("posthoc")
    if ev.get("taunorm_tau"):
        parts.append("taunorm")
    return "+".join(parts)
