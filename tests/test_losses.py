from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from imbsweep.errors import ConfigError
from imbsweep.losses import LOSSES, SCHEMES, CrossEntropy, Focal, build_loss, class_weights, ldam_margins

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
    w = class_weights(np.array([3, 1]), "inverse")
    assert w is not None and w.tolist() == pytest.approx([0.5, 1.5])
    w = class_weights(np.array([4, 1]), "sqrt_inverse")  # 1/2, 1 -> scaled to sum 2
    assert w is not None and w.tolist() == pytest.approx([2 / 3, 4 / 3])
    w = class_weights(np.array([5, 1]), "effective_number", beta=0.0)  # beta 0: all equal
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
    loss = CrossEntropy(np.array([3, 1]), class_weights="inverse")
    nll = [np.log(2), 2 + np.log(1 + np.exp(-2))]
    assert loss(logits, torch.tensor([0, 1])).item() == pytest.approx(
        (0.5 * nll[0] + 1.5 * nll[1]) / 2.0, rel=1e-6)


def test_registry_builds_by_name() -> None:
    assert LOSSES["ce"] is CrossEntropy
    loss = build_loss(OmegaConf.create({"_target_": "imbsweep.losses.CrossEntropy", "class_weights": "inverse"}),
                      COUNTS)
    assert isinstance(loss, CrossEntropy) and loss.scheme == "inverse"
    assert type(build_loss("focal", COUNTS)) is Focal
    with pytest.raises(ConfigError, match=r"loss='hinge': must be one of balanced_softmax, ce, "
                                          r"class_balanced, focal, ldam, logit_adjusted"):
        build_loss("hinge", COUNTS)
    with pytest.raises(ConfigError, match=r"loss.gamma=2: not an argument of imbsweep.losses.CrossEntropy"):
        build_loss({"_target_": "imbsweep.losses.CrossEntropy", "gamma": 2}, COUNTS)
    with pytest.raises(ConfigError, match=r"loss.class_counts=\[1, 2\]: is given at run time"):
        build_loss({"_target_": "imbsweep.losses.CrossEntropy", "class_counts": [1, 2]}, COUNTS)
    with pytest.raises(ConfigError, match=r"loss._target_='Linear': must be a subclass of imbsweep.losses.Imb"):
        build_loss({"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 2}, COUNTS)


# --- the shared suite every loss passes --------------------------------------------------

def conf_loss(name: str, **overrides: object) -> dict:
    """A loss's ``conf/loss/<name>.yaml`` with overrides (the configs mirror the signatures)."""
    from imbsweep._paths import PACKAGE_CONF

    node = OmegaConf.to_container(OmegaConf.load(PACKAGE_CONF / "loss" / f"{name}.yaml"))
    assert isinstance(node, dict)
    return {**node, **overrides}


#: each loss at its neutral setting, which must equal plain CE
NEUTRAL: dict[str, dict[str, object]] = {
    "ce": {},
    "focal": {"gamma": 0.0},
    "class_balanced": {"beta": 0.0, "base": "ce"},
    "ldam": {"max_m": 0.0},
    "logit_adjusted": {"tau": 0.0},
}


def tiny_batch(c: int = 4, n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, dtype=torch.float64, generator=g) * 3
    return logits.requires_grad_(True), torch.arange(n) % c


def test_every_loss_has_a_config_and_a_neutral_setting() -> None:
    from imbsweep._paths import PACKAGE_CONF

    assert sorted(p.stem for p in (PACKAGE_CONF / "loss").glob("*.yaml")) == sorted(LOSSES)
    # balanced softmax has no knob; it is checked through its identity with logit adjustment
    assert set(NEUTRAL) | {"balanced_softmax"} == set(LOSSES)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_is_finite_and_its_gradient_matches_finite_differences(name: str) -> None:
    loss = build_loss(conf_loss(name, class_weights="inverse") if "class_weights" in conf_loss(name)
                      else conf_loss(name), COUNTS).double()
    logits, y = tiny_batch()
    value = loss(logits, y)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(lambda z: loss(z, y), (logits.detach().requires_grad_(True),))
    # extreme logits stay finite (log-softmax, not log of a softmax)
    assert torch.isfinite(loss(logits.detach() * 1e3, y))


@pytest.mark.parametrize(("name", "smoothing"), [
    *((name, 0.0) for name in sorted(NEUTRAL)),
    *((name, 0.1) for name in sorted(NEUTRAL) if name != "focal"),  # focal takes no smoothing
])
def test_loss_at_its_neutral_setting_is_plain_ce(name: str, smoothing: float) -> None:
    loss = build_loss(conf_loss(name, **NEUTRAL[name], label_smoothing=smoothing), COUNTS).double()
    logits, y = tiny_batch()
    ref = F.cross_entropy(logits, y, label_smoothing=smoothing)
    assert loss(logits, y).item() == pytest.approx(ref.item(), rel=1e-12)


def test_focal_neutral_with_focal_base_of_class_balanced() -> None:
    loss = build_loss(conf_loss("class_balanced", beta=0.0, base="focal", gamma=0.0), COUNTS).double()
    logits, y = tiny_batch()
    assert loss(logits, y).item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-12)


def test_balanced_softmax_equals_logit_adjustment_at_tau_one() -> None:
    for smoothing in (0.0, 0.2):
        bs = build_loss(conf_loss("balanced_softmax", label_smoothing=smoothing), COUNTS).double()
        la = build_loss(conf_loss("logit_adjusted", tau=1.0, label_smoothing=smoothing), COUNTS).double()
        logits, y = tiny_batch(seed=3)
        assert bs(logits, y).item() == pytest.approx(la(logits, y).item(), rel=1e-12)


def test_logit_adjustment_by_hand() -> None:
    # counts [3, 1]: prior [3/4, 1/4]; zero logits become [log 3/4, log 1/4], softmax = prior
    la = build_loss(conf_loss("logit_adjusted", tau=1.0), np.array([3, 1]))
    z = torch.zeros(2, 2)
    assert la(z, torch.tensor([1, 1])).item() == pytest.approx(np.log(4), rel=1e-6)
    assert la(z, torch.tensor([0, 0])).item() == pytest.approx(np.log(4 / 3), rel=1e-6)
    half = build_loss(conf_loss("logit_adjusted", tau=0.5), np.array([3, 1]))  # [sqrt 3, 1] / (sqrt 3 + 1)
    assert half(z, torch.tensor([1, 1])).item() == pytest.approx(np.log(np.sqrt(3) + 1), rel=1e-6)


def test_focal_by_hand() -> None:
    # two equal logits: p_t = 1/2, so the loss is (1/2)^gamma * log 2
    z = torch.zeros(1, 2)
    for gamma in (0.0, 1.0, 2.0, 3.5):
        f = build_loss(conf_loss("focal", gamma=gamma), np.array([5, 5]))
        assert f(z, torch.tensor([0])).item() == pytest.approx(0.5 ** gamma * np.log(2), rel=1e-6)
    # p_t = e^2 / (e^2 + 1) for logits [2, 0]
    p = np.exp(2) / (np.exp(2) + 1)
    f = build_loss(conf_loss("focal", gamma=2.0), np.array([5, 5]))
    assert f(torch.tensor([[2.0, 0.0]]), torch.tensor([0])).item() == pytest.approx(
        -(1 - p) ** 2 * np.log(p), rel=1e-6)


def test_focal_alpha_is_a_weighted_mean() -> None:
    # alpha from inverse weights on counts [3, 1] = [0.5, 1.5]; two examples, one per class
    f = build_loss(conf_loss("focal", gamma=1.0, class_weights="inverse"), np.array([3, 1]))
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    p1 = 1 / (np.exp(2) + 1)
    per = [0.5 * np.log(2), -(1 - p1) * np.log(p1)]
    assert f(z, torch.tensor([0, 1])).item() == pytest.approx((0.5 * per[0] + 1.5 * per[1]) / 2.0, rel=1e-6)


def test_class_balanced_uses_effective_number_weights() -> None:
    cb = build_loss(conf_loss("class_balanced", beta=0.99, base="ce"), COUNTS)
    n = COUNTS.astype(np.float64)
    raw = (1 - 0.99) / (1 - 0.99 ** n)
    assert cb.weight is not None
    np.testing.assert_allclose(cb.weight.numpy(), raw * len(n) / raw.sum(), rtol=1e-6)
    assert cb.scheme == "effective_number"
    logits, y = tiny_batch()
    ref = F.cross_entropy(logits, y, weight=cb.weight.double())
    assert cb.double()(logits, y).item() == pytest.approx(ref.item(), rel=1e-12)


def test_ldam_margins_follow_the_formula() -> None:
    # n^-1/4 for [16, 1] is [1/2, 1]; scaled so the largest is max_m
    assert ldam_margins(np.array([16, 1]), 0.5).tolist() == pytest.approx([0.25, 0.5])
    m = ldam_margins(COUNTS, 0.3).numpy()
    raw = COUNTS.astype(np.float64) ** -0.25
    np.testing.assert_allclose(m, raw * 0.3 / raw.max(), rtol=1e-6)
    assert m.max() == pytest.approx(0.3) and np.all(np.diff(m) > 0)  # rarer class, larger margin


def test_ldam_by_hand() -> None:
    # counts [16, 1], max_m 0.5, s 10: the target's logit loses s * m_y
    ldam = build_loss(conf_loss("ldam", max_m=0.5, s=10.0), np.array([16, 1]))
    z = torch.tensor([[3.0, 1.0]])
    for y, m in ((0, 0.25), (1, 0.5)):
        shifted = z.clone()
        shifted[0, y] -= 10.0 * m
        assert ldam(z, torch.tensor([y])).item() == pytest.approx(
            F.cross_entropy(shifted, torch.tensor([y])).item(), rel=1e-6)


def test_ldam_brings_its_normalised_classifier() -> None:
    from imbsweep.models import NormedLinear

    head = build_loss(conf_loss("ldam", s=30.0), COUNTS).make_head(8, 4)
    assert isinstance(head, NormedLinear)
    x = torch.randn(5, 8)
    out = head(x)
    assert out.shape == (5, 4) and out.abs().max() <= 30.0 + 1e-4  # s * cosine
    cos = F.normalize(x, dim=1) @ F.normalize(head.weight, dim=1).T
    torch.testing.assert_close(out, 30.0 * cos)
    assert build_loss(conf_loss("ce"), COUNTS).make_head(8, 4) is None


@pytest.mark.parametrize("name", ["ce", "focal", "ldam"])
def test_deferred_reweighting_switches_weights_on_at_its_epoch(name: str) -> None:
    loss = build_loss(conf_loss(name, class_weights="inverse", reweight_from_epoch=3), COUNTS).double()
    plain = build_loss(conf_loss(name), COUNTS).double()
    weighted = build_loss(conf_loss(name, class_weights="inverse"), COUNTS).double()
    logits, y = tiny_batch()
    for epoch, ref in ((1, plain), (2, plain), (3, weighted), (7, weighted)):
        loss.set_epoch(epoch)
        assert loss(logits, y).item() == pytest.approx(ref(logits, y).item(), rel=1e-12), epoch
    assert loss.weight is not None


@pytest.mark.parametrize(("name", "args", "key", "message"), [
    ("focal", {"label_smoothing": 0.1}, "loss.label_smoothing", "must be 0 for loss 'focal'"),
    ("class_balanced", {"label_smoothing": 0.1}, "loss.label_smoothing", "use base=ce"),
    ("class_balanced", {"base": "hinge"}, "loss.base", "must be one of ce, focal"),
    ("focal", {"gamma": -1.0}, "loss.gamma", ">= 0"),
    ("ldam", {"max_m": 1.5}, "loss.max_m", r"\[0, 1\)"),
    ("ldam", {"s": 0}, "loss.s", "> 0"),
    ("logit_adjusted", {"tau": -0.5}, "loss.tau", ">= 0"),
    ("ce", {"reweight_from_epoch": 3}, "loss.reweight_from_epoch", "needs loss.class_weights"),
    ("ce", {"class_weights": "inverse", "reweight_from_epoch": 0}, "loss.reweight_from_epoch", ">= 1"),
    ("balanced_softmax", {"gamma": 2.0}, "loss.gamma", "not an argument of imbsweep.losses.BalancedSoftmax"),
])
def test_bad_loss_arguments_are_one_line_errors(name: str, args: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        build_loss(conf_loss(name, **args), COUNTS)
    assert err.value.key == key and "\n" not in str(err.value)


@pytest.mark.parametrize(("fraction", "epochs", "first"),
                         [(0.75, 40, 31), (0.75, 15, 12), (0.0, 15, 1), (0.99, 15, 15)])
def test_drw_relative_to_the_run_length_switches_on_inside_it(fraction: float, epochs: int, first: int) -> None:
    loss = build_loss(conf_loss("ce", class_weights="inverse", reweight_from_fraction=fraction), COUNTS, epochs)
    assert loss.reweight_from_epoch == first and first <= epochs


@pytest.mark.parametrize(("extra", "words"), [
    ({"reweight_from_fraction": 1.0}, "loss.reweight_from_fraction=1.0: must be a finite number in [0, 1) or null"),
    ({"reweight_from_fraction": -0.1}, "loss.reweight_from_fraction=-0.1: must be a finite number in [0, 1) or null"),
    ({"reweight_from_fraction": 0.5, "reweight_from_epoch": 3},
     "cannot be set together with loss.reweight_from_epoch=3"),
])
def test_bad_drw_fractions_are_one_line_errors(extra: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_loss(conf_loss("ce", class_weights="inverse", **extra), COUNTS, 10)
    assert words in str(err.value)
