"""The trick label: the part of a config that handles imbalance, derived, never typed."""

from __future__ import annotations

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


def trick_label(cfg: Any) -> str:
    """``loss`` family, then ``+w=<scheme>`` for class weights (``+drw`` when they are
    deferred past epoch 1), ``+rs=<sampler>`` for resampling, ``+mixup`` / ``+remix`` for batch
    mixing (alpha > 0), ``+maxnorm`` for a MaxNorm bound on the classifier, ``+crt`` / ``+lws``
    for classifier re-training, ``+posthoc`` for post-hoc logit adjustment and ``+taunorm`` for
    tau-normalisation when present. Knobs of the trick (gamma, tau, margins) are not part of it.

    Example:
        >>> trick_label({"loss": {"name": "ce", "class_weights": "inverse"}})
        'ce+w=inverse'
        >>> trick_label({"loss": {"name": "ce"}, "augment": {"name": "remix", "alpha": 1.0},
        ...              "stage2": {"name": "crt"}})
        'ce+remix+crt'
    """
    loss = cfg["loss"]
    parts = [str(loss["name"])]
    scheme = loss.get("class_weights", "none")
    if scheme not in (None, "none"):
        parts.append(f"w={scheme}")
        # from epoch 1 (or fraction 0) is plain weighting
        if (loss.get("reweight_from_epoch") or 1) > 1 or (loss.get("reweight_from_fraction") or 0) > 0:
            parts.append("drw")
    resampling = (cfg.get("resampling") or {}).get("name", "none")
    if resampling not in (None, "none"):
        parts.append(f"rs={resampling}")
    augment = cfg.get("augment") or {}
    if augment.get("name", "none") not in (None, "none") and augment.get("alpha", 1.0):  # alpha 0: no mixing
        parts.append(str(augment["name"]))
    if (cfg.get("model") or {}).get("max_norm") is not None:
        parts.append("maxnorm")
    stage2 = (cfg.get("stage2") or {}).get("name", "none")
    if stage2 not in (None, "none"):
        parts.append(str(stage2))
    ev = cfg.get("eval") or {}
    if ev.get("posthoc_tau"):
        parts.append("posthoc")
    if ev.get("taunorm_tau"):
        parts.append("taunorm")
    return "+".join(parts)
