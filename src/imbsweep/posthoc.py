"""What every run scans on its selected weights after training: post-hoc logit adjustment
(Menon et al. 2021) and tau-normalisation (Kang et al. 2020), each over a tau grid, tau
picked on validation. Imports torch only to scan tau-normalisation, so readers of the store
can use its names.

In a training loop of your own: :func:`adjusted_logits` (``z - tau * log(prior)``, on numpy
arrays or torch tensors), :func:`best_posthoc_tau` (its tau picked on validation) and
:func:`best_taunorm_tau` (tau-normalisation's, for a linear classifier on its features; the
classifier itself: :func:`imbsweep.decoupling.taunorm_logits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .metrics import HEADLINE, headline

if TYPE_CHECKING:
    import torch

    from .data import Dataset


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``[N, C]`` logits, shifted by each row's maximum (no overflow)."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


#: the taus a scan tries unless told otherwise (``eval.posthoc_grid`` and ``eval.taunorm_grid``'s default)
TAU_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)

_Logits = TypeVar("_Logits")


def log_prior_of(class_counts: Any) -> np.ndarray:
    """``log(n_c / N)`` of training class counts ``[C]`` (float64; a class never seen: ``log 1e-12``)."""
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or not len(counts) or (counts < 0).any() or counts.sum() <= 0:
        raise ValueError(f"class_counts must be a 1-D list of counts >= 0 with a positive sum, got {counts}")
    return np.log(np.maximum(counts, 1e-12) / counts.sum())


def adjusted_logits(logits: _Logits, class_counts: Any, tau: float = 1.0) -> _Logits:
    """Post-hoc logit adjustment (Menon et al. 2021, eq. 8): ``logits - tau * log(prior)``, the
    prior from the training class counts. The argmax at ``tau = 1`` is the prediction that is
    optimal for balanced error; ``tau = 0`` changes nothing.

    Args:
        logits: ``[N, C]``, a numpy array or a torch tensor (returned as the same type, on the
            same device and dtype).
        class_counts: training examples per class ``[C]``.
        tau: the adjustment strength, finite and >= 0.

    Example:
        >>> adjusted_logits(np.zeros((1, 2)), [90, 10]).argmax(axis=1)  # the rare class wins a tie
        array([1])
    """
    if isinstance(tau, bool) or not isinstance(tau, int | float) or not 0 <= tau < float("inf"):
        raise ValueError(f"{tau=} must be a finite number >= 0")
    shift = tau * log_prior_of(class_counts)
    new_tensor = getattr(logits, "new_tensor", None)
    if callable(new_tensor):  # a torch tensor, without importing torch here
        return logits - new_tensor(shift)
    return np.asarray(logits) - shift  # type: ignore[return-value]


def _scan(score: Any, grid: Sequence[float], metric: str, metrics: tuple[str, ...]) -> tuple[float, dict[float, float]]:
    """``(tau, {tau: value})``: ``score(tau)``'s headline ``metric`` over ``grid``, the first best
    tau (so the smallest among equals)."""
    if metric not in metrics:
        raise ValueError(f"{metric=} must be one of {', '.join(metrics)}")
    taus = sorted({float(g) for g in grid})
    if not taus or not all(0 <= g < float("inf") for g in taus):
        raise ValueError(f"grid={list(grid)} must be a non-empty list of finite numbers >= 0")
    values = {g: score(g)[metric] for g in taus}
    return taus[int(np.argmax([values[g] for g in taus]))], values


def best_posthoc_tau(val_logits: Any, y_val: Any, class_counts: Any, grid: Sequence[float] = TAU_GRID,
                     metric: str = "balanced_acc") -> tuple[float, dict[float, float]]:
    """The tau of post-hoc logit adjustment picked on validation, as every imbsweep run picks it:
    the one whose :func:`adjusted_logits` score best on ``metric`` (first best on ties).

    Args:
        val_logits: validation logits ``[N, C]`` (numpy array or torch tensor).
        y_val: validation labels ``[N]``.
        class_counts: training examples per class ``[C]``.
        grid: the taus tried.
        metric: one of :data:`POSTHOC_METRICS` (``balanced_acc``, ``macro_f1``, …).

    Returns:
        The tau picked, and ``{tau: metric value}`` over the grid.
    """
    logits, y = _numpy(val_logits), _numpy(y_val).astype(np.int64)
    prior = log_prior_of(class_counts)
    return _scan(lambda g: _summary(logits, prior, g, y), grid, metric, POSTHOC_METRICS)


def best_taunorm_tau(head: torch.nn.Module, val_features: torch.Tensor, y_val: Any,
                     grid: Sequence[float] = TAU_GRID, metric: str = "balanced_acc",
                     batch_size: int = 1024) -> tuple[float, dict[float, float]]:
    """The tau of tau-normalisation (Kang et al. 2020) picked on validation: the classifier
    ``head`` (a linear layer, or any with a per-class weight matrix) with rows ``w_c / ||w_c||^tau``,
    scored on ``metric`` over ``grid`` (first best on ties).

    Args:
        head: the trained classifier.
        val_features: what ``head`` takes for the validation examples ``[N, d]``.
        y_val: validation labels ``[N]``.
        grid: the taus tried.
        metric: one of :data:`TAUNORM_METRICS`.
        batch_size: the features' batch size for ``head``.

    Returns:
        The tau picked, and ``{tau: metric value}`` over the grid; apply it with
        :func:`imbsweep.decoupling.taunorm_logits`.
    """
    from .decoupling import TauNorm

    y = _numpy(y_val).astype(np.int64)
    norm = TauNorm(head, val_features, batch_size)

    def score(g: float) -> dict[str, float]:
        logits = norm.logits(g)
        return headline(y, logits.argmax(dim=1).cpu().numpy(), logits.shape[1])

    return _scan(score, grid, metric, TAUNORM_METRICS)


def _numpy(x: Any) -> np.ndarray:
    detach = getattr(x, "detach", None)
    return np.asarray(detach().cpu() if callable(detach) else x)


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


__all__ = ["POSTHOC_KINDS", "POSTHOC_METRICS", "TAUNORM_METRICS", "TAU_GRID", "PosthocScan", "adjusted_logits",
           "best_posthoc_tau", "best_taunorm_tau", "log_prior_of", "posthoc_probs", "posthoc_scan", "scan_metrics",
           "softmax", "taunorm_scan"]
