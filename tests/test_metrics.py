from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
)

from imbsweep.metrics import ShotGroups, class_keys, evaluate, expected_calibration_error


def _probs(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    z = rng.normal(size=(n, c)) * 2
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", range(5))
def test_metrics_agree_with_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = 6
    y = rng.integers(0, c - 1, 300)  # class 5 never occurs in y_true
    p = _probs(rng, 300, c)
    pred = p.argmax(1)
    ev = evaluate(p, y, np.array([500, 150, 60, 30, 10, 5]), [str(i) for i in range(c)], "val")
    m = ev.metrics
    assert m["val/acc"] == pytest.approx(accuracy_score(y, pred))
    assert m["val/balanced_acc"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["val/macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    rec = recall_score(y, pred, labels=range(c - 1), average=None, zero_division=0)
    prec = precision_score(y, pred, labels=range(c), average=None, zero_division=0)
    for k in range(c - 1):
        assert m[f"val/recall/{k}"] == pytest.approx(rec[k])
    assert "val/recall/5" not in m  # no support: no recall, rather than a fake 0
    for k in range(c):
        assert m[f"val/precision/{k}"] == pytest.approx(prec[k])
    assert m["val/worst_class_recall"] == pytest.approx(rec.min())
    assert m["val/gmean"] == pytest.approx(float(np.prod(rec) ** (1 / len(rec))))


def test_shot_groups_and_their_accuracy() -> None:
    counts = np.array([1000, 101, 100, 20, 19, 1])
    g = ShotGroups().of(counts)
    assert g["many"].tolist() == [True, True, False, False, False, False]
    assert g["medium"].tolist() == [False, False, True, True, False, False]
    assert g["few"].tolist() == [False, False, False, False, True, True]
    # one-hot predictions: classes 0, 2, 4 right, 1, 3, 5 wrong (predicted as 0)
    y = np.arange(6).repeat(2)
    pred = np.where(y % 2 == 0, y, 0)
    m = evaluate(np.eye(6)[pred], y, counts, list("abcdef"), "test").metrics
    assert m["test/acc_many"] == 0.5 and m["test/acc_medium"] == 0.5 and m["test/acc_few"] == 0.5
    assert m["test/gmean"] == 0.0 and m["test/worst_class_recall"] == 0.0


def test_empty_shot_group_is_not_logged() -> None:
    m = evaluate(np.eye(2)[[0, 1]], np.array([0, 1]), np.array([50, 30]), ["a", "b"], "v").metrics
    assert "v/acc_medium" in m and "v/acc_many" not in m and "v/acc_few" not in m


def test_ece_by_hand() -> None:
    # two bins used (15 bins): conf 0.95 (bin 14) right and wrong, conf 0.6 (bin 8) right
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.4, 0.6]])
    y = np.array([0, 1, 1])
    # bin 14: acc 0.5, conf 0.95 -> 2/3 * 0.45; bin 8: acc 1, conf 0.6 -> 1/3 * 0.4
    assert expected_calibration_error(p, y, 15) == pytest.approx(2 / 3 * 0.45 + 1 / 3 * 0.4)
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0.0


def test_loss_is_the_mean_negative_log_likelihood() -> None:
    p = np.array([[0.8, 0.2], [0.25, 0.75]])
    m = evaluate(p, np.array([0, 0]), np.array([5, 5]), ["a", "b"], "val").metrics
    assert m["val/loss"] == pytest.approx(-(np.log(0.8) + np.log(0.25)) / 2)


def test_metric_keys_are_mlflow_safe() -> None:
    assert class_keys(["cat/dog (rare)!", "0"]) == ["0_cat_dog _rare__", "1_0"]  # no "/" (it would nest)


def test_the_confusion_matrix_is_scikit_learns() -> None:
    from sklearn.metrics import confusion_matrix

    from imbsweep.metrics import confusion

    rng = np.random.default_rng(0)
    for n_classes, n in ((2, 1), (3, 50), (10, 2000), (7, 0)):
        y, p = rng.integers(0, n_classes, n), rng.integers(0, n_classes, n)
        y[: n // 2] = 0  # a class absent from the predictions or the truth must still get its row
        want = confusion_matrix(y, p, labels=np.arange(n_classes)) if n else np.zeros((n_classes, n_classes))
        assert np.array_equal(confusion(y, p, n_classes), want)
    with pytest.raises(ValueError, match="class indices"):
        confusion(np.array([0, 3]), np.array([0, 1]), 3)
