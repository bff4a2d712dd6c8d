"""Mixup and Remix against their formulas (Zhang et al. 2018; Chou et al. 2020, eq. 10)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imbsweep.augment import Mixup, Remix, build_augment, mixed_loss, remix_label_weights
from imbsweep.errors import ConfigError
from imbsweep.losses import CrossEntropy

COUNTS = np.array([100, 30, 10])


@pytest.mark.parametrize(("lam", "a", "b", "expected"), [
    # counts 100, 30, 10, 50; kappa 3, tau 0.5.
    # n_a / n_b >= 3 and lam < 0.5: the label goes to b (the minority) entirely
    (0.3, 0, 2, 0.0),    # 100 vs 10
    (0.3, 0, 1, 0.0),    # 100 vs 30: 3.33 >= 3
    (0.3, 1, 2, 0.0),    # 30 vs 10: 3 >= 3 (the bound is inclusive)
    (0.7, 0, 2, 0.7),    # the majority example dominates the input: mixup's label
    # n_a / n_b <= 1/3 and 1 - lam < 0.5: the label goes to a (the minority) entirely
    (0.7, 2, 0, 1.0),
    (0.7, 2, 1, 1.0),    # 10 vs 30: exactly 1/3
    (0.7, 1, 0, 1.0),    # 30 vs 100: 0.3 <= 1/3
    (0.3, 2, 0, 0.3),    # the minority example is the smaller share: mixup's label
    # classes within a factor kappa of each other keep mixup's label whatever lam
    (0.3, 0, 3, 0.3),    # 100 vs 50
    (0.7, 3, 0, 0.7),
    (0.3, 0, 0, 0.3),
])
def test_remix_label_rule_on_hand_made_counts(lam: float, a: int, b: int, expected: float) -> None:
    counts = torch.tensor([100, 30, 10, 50])
    w = remix_label_weights(lam, counts[torch.tensor([a])], counts[torch.tensor([b])], kappa=3.0, tau=0.5)
    assert w.tolist() == [pytest.approx(expected)]


def test_remix_rule_vectorised_and_its_thresholds() -> None:
    counts = torch.as_tensor(COUNTS, dtype=torch.float64)
    a, b = torch.tensor([0, 2, 0, 1]), torch.tensor([2, 0, 0, 2])
    assert remix_label_weights(0.2, counts[a], counts[b], 3.0, 0.5).tolist() == pytest.approx([0, 0.2, 0.2, 0])
    assert remix_label_weights(0.8, counts[a], counts[b], 3.0, 0.5).tolist() == pytest.approx([0.8, 1, 0.8, 0.8])
    # tau = 0 never relabels (Remix is mixup); a huge kappa neither
    assert remix_label_weights(0.2, counts[a], counts[b], 3.0, 0.0).tolist() == pytest.approx([0.2] * 4)
    assert remix_label_weights(0.2, counts[a], counts[b], 1e9, 0.5).tolist() == pytest.approx([0.2] * 4)


def test_mixup_mixes_inputs_and_losses_by_the_drawn_lambda() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 0])
    loss_fn = CrossEntropy(COUNTS)
    mixer = Mixup(COUNTS, alpha=0.4, seed=5)
    got = mixer.loss(model, loss_fn, x, y)
    lam, perm = Mixup(COUNTS, alpha=0.4, seed=5).draw(len(y))  # the same stream, drawn again
    assert 0 < lam < 1 and sorted(perm.tolist()) == list(range(8))
    logits = model(lam * x + (1 - lam) * x[perm])
    expected = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_remix_loss_is_the_per_example_mean_of_the_mixed_losses() -> None:
    # Chou et al.'s code: mean over the batch of w_k CE(y_k) + (1 - w_k) CE(y_perm_k); the groups of
    # equal weights give the same for an unweighted loss
    torch.manual_seed(1)
    logits = torch.randn(12, 3, dtype=torch.float64)
    y_a = torch.tensor([0, 0, 0, 1, 2, 2, 0, 1, 1, 2, 0, 0])
    y_b = torch.tensor([2, 1, 0, 0, 0, 1, 2, 2, 1, 0, 0, 2])
    counts = torch.as_tensor(COUNTS)
    w = remix_label_weights(0.35, counts[y_a], counts[y_b], 3.0, 0.5)
    assert set(w.tolist()) == {0.0, 0.35}  # two groups
    got = mixed_loss(CrossEntropy(COUNTS).double(), logits, y_a, y_b, w)
    per = w * F.cross_entropy(logits, y_a, reduction="none") + (1 - w) * F.cross_entropy(logits, y_b, reduction="none")
    assert got.item() == pytest.approx(per.mean().item(), rel=1e-12)
    # one weight for all is mixup's loss
    one = mixed_loss(CrossEntropy(COUNTS).double(), logits, y_a, y_b, torch.full((12,), 0.35, dtype=torch.float64))
    mixup = 0.35 * F.cross_entropy(logits, y_a) + 0.65 * F.cross_entropy(logits, y_b)
    assert one.item() == pytest.approx(mixup.item())


def test_mixed_loss_is_differentiable() -> None:
    logits = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    y_a, y_b = torch.tensor([0, 0, 2, 1, 0, 2]), torch.tensor([2, 1, 0, 0, 0, 1])
    w = remix_label_weights(0.3, torch.as_tensor(COUNTS)[y_a], torch.as_tensor(COUNTS)[y_b], 3.0, 0.5)
    loss = CrossEntropy(COUNTS, label_smoothing=0.1).double()
    assert torch.autograd.gradcheck(lambda z: mixed_loss(loss, z, y_a, y_b, w), (logits,))


def test_alpha_zero_is_no_mixing_and_same_seed_same_draws() -> None:
    assert build_augment({"_target_": "imbsweep.augment.Mixup", "alpha": 0.0}, COUNTS, 0) is None
    assert build_augment({"_target_": "imbsweep.augment.Remix", "alpha": 0}, COUNTS, 0) is None
    assert build_augment({"_target_": "imbsweep.augment.NoMixing"}, COUNTS, 0) is None
    assert build_augment(None, COUNTS, 0) is None
    a, b = Remix(COUNTS, seed=3), Remix(COUNTS, seed=3)
    for _ in range(3):
        la, pa = a.draw(16)
        lb, pb = b.draw(16)
        assert la == lb and torch.equal(pa, pb)
    assert Mixup(COUNTS, seed=4).draw(16)[0] != Mixup(COUNTS, seed=3).draw(16)[0]


@pytest.mark.parametrize(("node", "message"), [
    ({"_target_": "imbsweep.augment.CutMix"}, r"augment._target_='imbsweep.augment.CutMix': cannot be imported"),
    ({"name": "mixup"}, r"augment._target_=None: must name a class"),
    ({"_target_": "imbsweep.augment.Mixup", "alpha": -1}, r"augment.alpha=-1: must be a finite number >= 0"),
    ({"_target_": "imbsweep.augment.Mixup", "alpha": float("inf")}, r"augment.alpha=inf: must be a finite number >= 0"),
    ({"_target_": "imbsweep.augment.Remix", "kappa": 0.5}, r"augment.kappa=0.5: must be a finite number >= 1"),
    ({"_target_": "imbsweep.augment.Remix", "tau": 1.5}, r"augment.tau=1.5: must be a finite number in \[0, 1\]"),
    ({"_target_": "imbsweep.augment.Mixup", "kappa": 3},
     r"augment.kappa=3: not an argument of imbsweep.augment.Mixup; allowed: alpha$"),
    ({"_target_": "imbsweep.augment.Mixup", "seed": 3}, r"augment.seed=3: is given at run time"),
    ({"_target_": "imbsweep.augment.NoMixing", "alpha": 1},
     r"augment.alpha=1: not an argument of imbsweep.augment.NoMixing; it takes none"),
])
def test_bad_augment_settings_are_one_line_errors(node: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_augment(node, COUNTS, 0)
