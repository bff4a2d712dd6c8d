"""Classification metrics for imbalanced labels.

The confusion matrix is one ``np.bincount`` (scikit-learn's ``confusion_matrix`` gives the
same matrix, checked in the tests, but spends ~1.5 ms validating its input, and a run builds
one per epoch plus about 20 more: the test split and the post-hoc scan's 18); every other metric
is read off it (one pass over the predictions per evaluation), with the same conventions
as scikit-learn's scorers:
balanced accuracy and G-mean average over classes present in ``y_true``, macro-F1 over
classes present in ``y_true`` or ``y_pred`` with ``zero_division=0``. ECE (top-label,
equal-width bins, Guo et al. 2017) has no scikit-learn scorer and is computed here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ShotGroups:
    """Many/medium/few-shot split by training count: few ``< few_below``,
    many ``> many_above``, medium in between (defaults 20 and 100, as in Liu et al. 2019)."""

    few_below: int = 20
    many_above: int = 100

    def of(self, train_counts: np.ndarray) -> dict[str, np.ndarray]:
        c = np.asarray(train_counts)
        return {"many": c > self.many_above, "medium": (c >= self.few_below) & (c <= self.many_above),
                "few": c < self.few_below}


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one split, with the confusion matrix and per-class values behind them."""

    metrics: dict[str, float]
    confusion: np.ndarray
    recall: np.ndarray
    precision: np.ndarray
    support: np.ndarray


def clean(value: float) -> float:
    """The value without float noise: 12 significant digits (0.7549999999999999 -> 0.755),
    so that what MLflow shows, what Optuna is told and what compare reads are the same number."""
    v = float(value)
    return float(f"{v:.12g}") if math.isfinite(v) else v


def class_keys(class_names: Sequence[str]) -> list[str]:
    """The metric-name part of each class (``val/recall/<key>``), one-to-one with the labels.

    The labels themselves when every one is already a plain key (MLflow's characters, no
    ``/``, which would nest it, and none empty): MNIST-1D's ``0`` ... ``9`` stay as they are.
    Otherwise every class gets ``<index>_<label>`` with the label sanitised (``<4.8kg`` and
    ``>4.8kg`` become ``0__4.8kg`` and ``1__4.8kg``, ``teacher/nurse`` ``2_teacher_nurse``), so
    two labels never share a name; ``per_class.csv`` keeps the mapping.
    """
    safe = [re.sub(r"[^\w\-. :]", "_", str(n))[:100] for n in class_names]
    if safe == [str(n) for n in class_names] and all(safe) and len(set(safe)) == len(safe):
        return safe
    width = len(str(max(len(safe) - 1, 0)))
    return [f"{i:0{width}d}_{s}" for i, s in enumerate(safe)]


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|`` over bins ``(k/n, (k+1)/n]``."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = np.abs(np.bincount(idx, correct.astype(np.float64), n_bins)
                 - np.bincount(idx, conf, n_bins))
    return float(gap.sum() / max(len(y_true), 1))


def confusion(y_true: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """The confusion matrix over all ``n_classes`` labels (rows: truth), as scikit-learn's
    ``confusion_matrix(y_true, pred, labels=range(n_classes))``; labels are class indices."""
    y, p = np.asarray(y_true, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if y.shape != p.shape or (y.size and (min(y.min(), p.min()) < 0 or max(y.max(), p.max()) >= n_classes)):
        raise ValueError(f"labels must be class indices 0..{n_classes - 1} of equal length")
    return np.bincount(y * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


@dataclass(frozen=True)
class _Rates:
    tp: np.ndarray
    support: np.ndarray
    predicted: np.ndarray
    present: np.ndarray
    recall: np.ndarray
    precision: np.ndarray

    @classmethod
    def of(cls, cm: np.ndarray) -> _Rates:
        tp = np.diag(cm).astype(np.float64)
        support, predicted = cm.sum(axis=1), cm.sum(axis=0)
        present = support > 0
        recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
        precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
        return cls(tp, support, predicted, present, recall, precision)

    def headline(self) -> dict[str, float]:
        denom = self.precision + self.recall
        f1 = np.divide(2 * self.precision * self.recall, denom, out=np.zeros_like(self.tp), where=denom > 0)
        seen = self.present | (self.predicted > 0)
        r = self.recall[self.present]
        return {
            "acc": float(self.tp.sum() / max(self.support.sum(), 1)),
            "balanced_acc": float(r.mean()) if r.size else 0.0,
            "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
            "gmean": float(np.exp(np.log(r).mean())) if r.size and (r > 0).all() else 0.0,
            "worst_class_recall": float(r.min()) if r.size else 0.0,
        }


#: the metrics read off the confusion matrix alone (no probabilities)
HEADLINE = ("acc", "balanced_acc", "macro_f1", "gmean", "worst_class_recall")


def headline(y_true: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro-F1, G-mean and worst-class recall of hard
    predictions, with :func:`evaluate`'s conventions."""
    return _Rates.of(confusion(y_true, pred, n_classes)).headline()


def evaluate(probs: np.ndarray, y_true: np.ndarray, train_counts: np.ndarray,
             class_names: Sequence[str], prefix: str, shots: ShotGroups = ShotGroups(),
             ece_bins: int = 15) -> Evaluation:
    """All metrics of one split, named ``f"{prefix}/{name}"`` (``val/balanced_acc``, …).

    Args:
        probs: predicted class probabilities ``[N, C]``.
        y_true: labels ``[N]`` in ``0..C-1``.
        train_counts: training examples per class (for the shot groups).
        class_names: the labels; ``recall/<key>`` and ``precision/<key>`` use :func:`class_keys`.
        prefix: ``val`` or ``test``.
    """
    n_classes = probs.shape[1]
    cm = confusion(y_true, probs.argmax(axis=1), n_classes)
    rates = _Rates.of(cm)
    tp, support, present, recall, precision = rates.tp, rates.support, rates.present, rates.recall, rates.precision
    nll = -np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, None))
    m = {
        **rates.headline(),
        "ece": expected_calibration_error(probs, y_true, ece_bins),
        "loss": float(nll.mean()),
    }
    for group, mask in shots.of(train_counts).items():
        if (mask & present).any():  # a group with no classes has no accuracy, not 0
            m[f"acc_{group}"] = float(tp[mask].sum() / support[mask].sum())
    for c, key in enumerate(class_keys(class_names)):
        if present[c]:  # a class this split does not hold is not evaluated: no recall, not 0
            m[f"recall/{key}"] = float(recall[c])
        m[f"precision/{key}"] = float(precision[c])
    return Evaluation({f"{prefix}/{k}": v for k, v in m.items()}, cm, recall, precision, support)
