from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from imbsweep.errors import ConfigError
from imbsweep.losses import LOSSES, SCHEMES, CrossEntropy, build_loss, class_weights

COUNTS = np.array([100, 30, 10, 1])


def test_weight_schemes_match_their_formulas() -> None:
    n = COUNTS.astype(np.float64)
    c = len(n)
    beta = 0.99
    expected = {
        "inverse": 1 / n,
        "sqrt_inverse": n ** -0.5,
        "effective_number": (1 - beta) / (1 - beta ** n),
    }
    for scheme, raw in expected.items():
        w = class_weights(COUNTS, scheme, beta)
        assert w is not None
        np.testing.assert_allclose(w.numpy(), raw * c / raw.sum(), rtol=1e-6)
        assert float(w.sum()) == pytest.approx(c)
    assert class_weights(COUNTS, "none") is None


def test_weights_by_hand() -> None:
    w = class_weights([3, 1], "inverse")
    assert w is not None and w.tolist() == pytest.approx([0.5, 1.5])
    w = class_weights([4, 1], "sqrt_inverse")  # 1/2, 1 -> scaled to sum 2
    assert w is not None and w.tolist() == pytest.approx([2 / 3, 4 / 3])
    w = class_weights([5, 1], "effective_number", beta=0.0)  # beta 0: all equal
    assert w is not None and w.tolist() == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize(("args", "key"), [
    ({"class_weights": "balanced"}, "loss.class_weights"),
    ({"beta": 1.0}, "loss.beta"),
    ({"label_smoothing": 1.0}, "loss.label_smoothing"),
    ({"label_smoothing": -0.1}, "loss.label_smoothing"),
])
def test_bad_arguments_name_their_key(args: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        CrossEntropy(COUNTS, **args)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_ce_has_pytorch_semantics(scheme: str, smoothing: float) -> None:
    torch.manual_seed(0)
    logits = torch.randn(16, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (16,))
    loss = CrossEntropy(COUNTS, smoothing, scheme).double()
    w = class_weights(COUNTS, scheme, 0.999)
    ref = F.cross_entropy(logits, y, weight=None if w is None else w.double(),
                          label_smoothing=smoothing)
    assert loss(logits, y).item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.autograd.gradcheck(lambda z: loss(z, y), (logits,))


def test_weighted_ce_by_hand() -> None:
    # two examples, classes 0 and 1, inverse weights [0.5, 1.5]: weighted mean of -log p
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    loss = CrossEntropy([3, 1], class_weights="inverse")
    nll = [np.log(2), 2 + np.log(1 + np.exp(-2))]
    assert loss(logits, torch.tensor([0, 1])).item() == pytest.approx(
        (0.5 * nll[0] + 1.5 * nll[1]) / 2.0, rel=1e-6)


def test_registry_builds_by_name() -> None:
    assert LOSSES["ce"] is CrossEntropy
    loss = build_loss(OmegaConf.create({"name": "ce", "class_weights": "inverse"}), COUNTS)
    assert isinstance(loss, CrossEntropy) and loss.weight_scheme == "inverse"
    with pytest.raises(ConfigError, match=r"loss.name='hinge': must be one of ce"):
        build_loss({"name": "hinge"}, COUNTS)
    with pytest.raises(ConfigError, match=r"loss.gamma=2: not an argument of loss 'ce'"):
        build_loss({"name": "ce", "gamma": 2}, COUNTS)
