"""The trick label: the part of a config that handles imbalance, derived, never typed."""

from __future__ import annotations

from typing import Any

#: short column names of searched keys (other keys: their last segment)
SHORT_KEYS = {"optimizer.lr": "lr", "trainer.batch_size": "batch", "loss.label_smoothing": "smoothing"}


def short_key(key: str, extra: dict[str, str] | None = None) -> str:
    """``optimizer.lr`` -> ``lr``, ``loss.gamma`` -> ``gamma``."""
    return {**SHORT_KEYS, **(extra or {})}.get(key, key.rsplit(".", 1)[-1])


def trick_label(cfg: Any) -> str:
    """``loss`` family, then ``+w=<scheme>`` for class weights (``+drw`` when they are
    deferred past epoch 1), ``+rs=<sampler>`` for resampling and ``+posthoc`` for post-hoc logit
    adjustment when present. Knobs of the trick (gamma, tau, margins) are not part of it.

    Example:
        >>> trick_label({"loss": {"name": "ce", "class_weights": "inverse"}})
        'ce+w=inverse'
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
    if (cfg.get("eval") or {}).get("posthoc_tau"):
        parts.append("posthoc")
    return "+".join(parts)
