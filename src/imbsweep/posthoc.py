"""What every run scans on its selected weights after training: post-hoc logit adjustment
(Menon et al. 2021) and tau-normalisation (Kang et al. 2020), each over a tau grid, tau
picked on validation. Imports torch only to scan tau-normalisation, so readers of the store
can use its names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .metrics import HEADLINE, headline

if TYPE_CHECKING:
    import torch

    from .data import Dataset


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def posthoc_probs(logits: np.ndarray, log_prior: np.ndarray, tau: float) -> np.ndarray:
    """Class probabilities after post-hoc logit adjustment: ``softmax(z - tau * log(prior))``
    (Menon et al. 2021, eq. 8); ``tau = 0`` is the plain softmax."""
    return softmax(logits - tau * log_prior if tau else logits)


#: metrics reported after the post-hoc tau scan, as ``val/<name>_posthoc`` and ``test/<name>_posthoc``
POSTHOC_METRICS = HEADLINE

#: what every run scans after training, by the suffix of its metrics (``val/balanced_acc_<kind>``,
#: with its tau as ``<kind>/tau``); a post-hoc arm re-scores its source arm's trials by one of them
POSTHOC_KINDS = {"posthoc": "post-hoc logit adjustment", "taunorm": "tau-normalisation"}


@dataclass(frozen=True)
class PosthocScan:
    """Post-hoc adjustment over a tau grid on the selected weights: ``metric`` (the
    objective's name when it is one of :data:`POSTHOC_METRICS`, else balanced accuracy)
    on validation and test per tau; ``tau`` is the one picked on validation."""

    metric: str
    taus: tuple[float, ...]
    val: tuple[float, ...]
    test: tuple[float, ...]
    tau: float


def _summary(logits: np.ndarray, log_prior: np.ndarray, tau: float, y: np.ndarray) -> dict[str, float]:
    """The headline metrics of the predictions after post-hoc adjustment by ``tau``: the
    argmax of the adjusted logits (that of their softmax, without computing it)."""
    return headline(y, (logits - tau * log_prior if tau else logits).argmax(axis=1), logits.shape[1])


def posthoc_scan(val_logits: np.ndarray, y_val: np.ndarray, test_logits: np.ndarray,
                 y_test: np.ndarray, log_prior: np.ndarray, grid: list[float],
                 objective: str) -> PosthocScan:
    """Scan ``grid`` for the post-hoc tau; pick it on validation (first best on ties, so
    the smallest adjustment among equals)."""
    name = objective.removeprefix("val/")
    metric = name if name in POSTHOC_METRICS else "balanced_acc"
    taus = tuple(sorted(set(grid)))
    val = tuple(_summary(val_logits, log_prior, g, y_val)[metric] for g in taus)
    test = tuple(_summary(test_logits, log_prior, g, y_test)[metric] for g in taus)
    return PosthocScan(metric, taus, val, test, taus[int(np.argmax(val))])


def scan_metrics(scan: PosthocScan, val_logits: np.ndarray, test_logits: np.ndarray, ds: Dataset,
                 log_prior: np.ndarray) -> dict[str, float]:
    """``posthoc/tau`` and the summary metrics at it, ``val/*_posthoc`` and ``test/*_posthoc``."""
    out = {"posthoc/tau": scan.tau}
    for split, logits, y in (("val", val_logits, ds.y_val), ("test", test_logits, ds.y_test)):
        for k, v in _summary(logits, log_prior, scan.tau, y).items():
            out[f"{split}/{k}_posthoc"] = v
    return out


#: metrics reported after the tau-normalisation scan, as ``val/<name>_taunorm`` and ``test/<name>_taunorm``
TAUNORM_METRICS = HEADLINE


def taunorm_scan(head: torch.nn.Module, val_features: torch.Tensor, y_val: np.ndarray,
                 test_features: torch.Tensor, y_test: np.ndarray, grid: list[float], objective: str,
                 batch_size: int) -> tuple[PosthocScan, dict[str, float]]:
    """Scan ``grid`` for the tau of tau-normalisation (Kang et al. 2020) on the selected
    classifier and its stored features; pick tau on validation (first best on ties, so the
    smallest change among equals).

    Returns:
        The scan (``metric`` as in :func:`posthoc_scan`), and ``taunorm/tau`` with the
        headline metrics at it, ``val/<name>_taunorm`` and ``test/<name>_taunorm``.
    """
    from .decoupling import TauNorm  # torch: only a run that trains scans

    name = objective.removeprefix("val/")
    metric = name if name in TAUNORM_METRICS else "balanced_acc"
    taus = tuple(sorted(set(grid)))
    summaries: dict[str, list[dict[str, float]]] = {"val": [], "test": []}
    for split, feats, y in (("val", val_features, y_val), ("test", test_features, y_test)):
        norm = TauNorm(head, feats, batch_size)
        for g in taus:
            logits = norm.logits(g)
            summaries[split].append(headline(y, logits.argmax(dim=1).cpu().numpy(), logits.shape[1]))
    val = tuple(m[metric] for m in summaries["val"])
    at = int(np.argmax(val))
    scan = PosthocScan(metric, taus, val, tuple(m[metric] for m in summaries["test"]), taus[at])
    out = {"taunorm/tau": scan.tau}
    for split in ("val", "test"):
        out.update({f"{split}/{k}_taunorm": v for k, v in summaries[split][at].items()})
    return scan, out
