"""τ-normalisation and classifier re-training (Kang et al. 2020) against their formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from imbsweep.decoupling import CRT, LWS, STAGES2, TauNorm, build_stage2, check_head, taunorm_weight
from imbsweep.errors import ConfigError
from imbsweep.models import NormedLinear, ScaledHead


def _head(seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    head = torch.nn.Linear(6, 4)
    with torch.no_grad():
        head.weight.mul_(torch.tensor([[3.0], [1.0], [0.2], [0.5]]))  # unequal class norms
    return head


def test_taunorm_weight_is_w_over_its_norm_to_the_tau() -> None:
    w = _head().weight.detach()
    norms = w.norm(dim=1)
    assert taunorm_weight(w, 0.0) is w  # tau 0: the plain classifier
    torch.testing.assert_close(taunorm_weight(w, 1.0).norm(dim=1), torch.ones(4))
    torch.testing.assert_close(taunorm_weight(w, 0.5).norm(dim=1), norms.sqrt())
    torch.testing.assert_close(taunorm_weight(w, 2.0), w / norms[:, None] ** 2)
    zero = torch.zeros(2, 3)
    assert torch.equal(taunorm_weight(zero, 1.0), zero)  # a zero row stays zero, no NaN


@pytest.mark.parametrize("batch", [3, 4096])
def test_taunorm_at_tau_zero_is_the_plain_prediction_exactly(batch: int) -> None:
    head, feats = _head(), torch.randn(50, 6)
    plain = torch.cat([head(feats[i:i + batch]) for i in range(0, 50, batch)])
    assert torch.equal(TauNorm(head, feats, batch).logits(0.0), plain.detach())


@pytest.mark.parametrize("tau", [0.25, 1.0, 1.75])
def test_taunorm_logits_match_the_normalised_classifier(tau: float) -> None:
    head, feats = _head(), torch.randn(40, 6)
    expected = F.linear(feats, taunorm_weight(head.weight, tau), head.bias).detach()
    torch.testing.assert_close(TauNorm(head, feats, 7).logits(tau), expected)
    # under LWS scales: the base classifier normalised, the scales kept
    scaled = ScaledHead(_head())
    with torch.no_grad():
        scaled.scales.copy_(torch.tensor([0.5, 2.0, 1.0, 3.0]))
    torch.testing.assert_close(TauNorm(scaled, feats, 7).logits(tau), expected * scaled.scales.detach())


def test_taunorm_changes_nothing_on_a_normalised_classifier() -> None:
    torch.manual_seed(0)
    head, feats = NormedLinear(6, 4, scale=10.0), torch.randn(30, 6)
    norm = TauNorm(head, feats, 8)
    torch.testing.assert_close(norm.logits(1.0), norm.logits(0.0))


def test_taunorm_needs_class_weights() -> None:
    with pytest.raises(ValueError, match="Sequential has no per-class weight matrix"):
        TauNorm(torch.nn.Sequential(), torch.zeros(2, 2), 2)


def test_crt_reinitialises_a_copy_and_lws_freezes_the_classifier_under_scales() -> None:
    head = _head()
    before = head.weight.detach().clone()
    fresh, params = CRT().new_head(head)
    assert fresh is not head and torch.equal(head.weight, before)  # the trained classifier is untouched
    assert isinstance(fresh, torch.nn.Linear)
    assert not torch.equal(fresh.weight, before) and fresh.weight.norm(dim=1).max() < 2  # nn.Linear's init
    assert {id(p) for p in params} == {id(p) for p in fresh.parameters()}
    scaled, params = LWS().new_head(head)
    assert isinstance(scaled, ScaledHead) and [id(p) for p in params] == [id(scaled.scales)]
    assert torch.equal(scaled.scales, torch.ones(4)) and not head.weight.requires_grad
    feats = torch.randn(5, 6)
    assert torch.equal(scaled(feats), head(feats))  # scales start at 1: the same classifier


def test_the_stage2_configs_build() -> None:
    from omegaconf import OmegaConf

    from imbsweep._paths import PACKAGE_CONF

    assert build_stage2(OmegaConf.load(PACKAGE_CONF / "stage2" / "none.yaml")) is None
    for name in ("crt", "lws"):
        s = build_stage2(OmegaConf.load(PACKAGE_CONF / "stage2" / f"{name}.yaml"))
        assert s == {"crt": CRT, "lws": LWS}[name](epochs=10, lr=0.01, sampling="class_balanced") and s.name == name
    assert sorted(p.stem for p in (PACKAGE_CONF / "stage2").glob("*.yaml")) == sorted(STAGES2)


@pytest.mark.parametrize(("node", "message"), [
    ({"_target_": "imbsweep.decoupling.NCM"}, r"stage2._target_='imbsweep.decoupling.NCM': cannot be imported"),
    ({"_target_": "imbsweep.decoupling.CRT", "epochs": 0}, r"stage2.epochs=0: must be an integer >= 1"),
    ({"_target_": "imbsweep.decoupling.CRT", "epochs": 2.5}, r"stage2.epochs=2.5: must be an integer >= 1"),
    ({"_target_": "imbsweep.decoupling.LWS", "lr": 0}, r"stage2.lr=0: must be a finite number > 0"),
    ({"_target_": "imbsweep.decoupling.LWS", "sampling": "smote"},
     r"stage2.sampling='smote': must be one of none, class_balanced"),
    ({"_target_": "imbsweep.decoupling.CRT", "momentum": 0.9},
     r"stage2.momentum=0.9: not an argument of imbsweep.decoupling.CRT; allowed: epochs, lr, sampling$"),
    ({"_target_": "imbsweep.decoupling.NoStage2", "epochs": 5},
     r"stage2.epochs=5: not an argument of imbsweep.decoupling.NoStage2; it takes none"),
    ({"_target_": "imbsweep.augment.NoMixing"},
     r"stage2._target_='NoMixing': must be a subclass of imbsweep.decoupling.Stage2"),
])
def test_bad_stage2_settings_are_one_line_errors(node: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_stage2(node)


def test_a_head_stage2_cannot_act_on_is_an_error() -> None:
    class Opaque(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(ConfigError, match=r"stage2='crt': needs a head that can be re-initialised; Opaque"):
        check_head(Opaque(), CRT())
    with pytest.raises(ConfigError, match=r"stage2='lws': needs a head with out_features; Opaque"):
        check_head(Opaque(), LWS())
    check_head(NormedLinear(3, 2), CRT())  # LDAM's classifier re-initialises as in its paper's code
