"""Post-hoc adjustment for a loop of the user's own (``imbsweep.posthoc``): the adjusted logits
by hand, on numpy arrays and torch tensors, and the tau picked on validation as every run of
the app picks it (``posthoc_scan``, ``taunorm_scan``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imbsweep.posthoc import (
    TAU_GRID,
    adjusted_logits,
    best_posthoc_tau,
    best_taunorm_tau,
    posthoc_scan,
    taunorm_scan,
)

COUNTS = [80, 15, 5]


def test_adjusted_logits_by_hand_on_arrays_and_tensors() -> None:
    z = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    prior = np.array(COUNTS) / 100
    np.testing.assert_allclose(adjusted_logits(z, COUNTS, 0.5), z - 0.5 * np.log(prior))
    np.testing.assert_array_equal(adjusted_logits(z, COUNTS, 0.0), z)
    t = torch.tensor(z, dtype=torch.float32, requires_grad=True)
    out = adjusted_logits(t, COUNTS)  # tau = 1: the balanced-error prediction
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.requires_grad
    torch.testing.assert_close(out, torch.tensor(z - np.log(prior), dtype=torch.float32))
    assert out.argmax(dim=1).tolist() == [2, 2]  # the rare class overtakes: log(0.8 / 0.05) > 2


@pytest.mark.parametrize(("args", "message"), [
    ({"tau": -1.0}, "tau=-1.0 must be a finite number >= 0"),
    ({"tau": float("nan")}, "tau=nan must be"),
    ({"class_counts": [0, 0]}, "class_counts must be"),
    ({"class_counts": [[1, 2]]}, "class_counts must be"),
])
def test_bad_adjustment_arguments_are_value_errors(args: dict[str, object], message: str) -> None:
    kwargs: dict[str, object] = {"class_counts": COUNTS, "tau": 1.0, **args}
    with pytest.raises(ValueError, match=message):
        adjusted_logits(np.zeros((1, 3)), **kwargs)  # type: ignore[arg-type]


def _logits(seed: int, n: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """Logits biased toward the head class, as a model trained on a long tail gives."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    z = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[y] + np.log(np.array(COUNTS) / 100)
    return z, y


@pytest.mark.parametrize("metric", ["balanced_acc", "macro_f1", "worst_class_recall"])
@pytest.mark.parametrize("seed", range(3))
def test_best_posthoc_tau_picks_what_every_run_picks(metric: str, seed: int) -> None:
    z, y = _logits(seed)
    zt, yt = _logits(seed + 100)
    tau, scores = best_posthoc_tau(torch.tensor(z), torch.tensor(y), COUNTS, metric=metric)
    scan = posthoc_scan(z, y, zt, yt, np.log(np.array(COUNTS) / 100), list(TAU_GRID), f"val/{metric}")
    assert tau == scan.tau and tuple(scores) == scan.taus and tuple(scores.values()) == scan.val
    assert scores[tau] > scores[0.0]  # biased logits: some adjustment beats none


def test_ties_pick_the_smallest_tau_and_bad_scans_are_value_errors() -> None:
    z = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])  # every tau of the grid: all right
    tau, scores = best_posthoc_tau(z, [0, 1, 2], COUNTS, grid=[1.0, 0.5, 0.0])
    assert tau == 0.0 and set(scores.values()) == {1.0}
    with pytest.raises(ValueError, match="metric='ece' must be one of acc, balanced_acc"):
        best_posthoc_tau(z, [0, 1, 2], COUNTS, metric="ece")
    with pytest.raises(ValueError, match=r"grid=\[\] must be a non-empty list"):
        best_posthoc_tau(z, [0, 1, 2], COUNTS, grid=[])


def test_best_taunorm_tau_picks_what_every_run_picks() -> None:
    torch.manual_seed(0)
    true = torch.nn.functional.normalize(torch.randn(3, 6), dim=1)  # unit rows: a balanced classifier
    feats = torch.randn(120, 6)
    y = (feats @ true.T).argmax(dim=1).numpy()
    head = torch.nn.Linear(6, 3, bias=False)
    with torch.no_grad():  # the head class's row grew, as on a long tail; tau = 1 gives `true` back
        head.weight.copy_(true * torch.tensor([[4.0], [1.0], [0.3]]))
    tau, scores = best_taunorm_tau(head, feats, torch.tensor(y))
    scan, _ = taunorm_scan(head, feats, y, feats, y, list(TAU_GRID), "val/balanced_acc", 64)
    assert tau == scan.tau and tuple(scores.values()) == scan.val and tuple(scores) == TAU_GRID
    assert tau > 0 and scores[tau] > scores[0.0] and scores[1.0] == 1.0
