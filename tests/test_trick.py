"""Trick labels: derived from the config (plain dicts and composed configs), never typed; and
the short numbers they are written with."""

from __future__ import annotations

import pytest

from imbsweep.trick import trick_label
from tests.helpers.configs import MakeCfg


def test_trick_label() -> None:
    assert trick_label({"loss": {"name": "ce", "class_weights": "none"}}) == "ce"
    assert trick_label({"loss": {"name": "focal", "class_weights": "effective_number"},
                        "resampling": {"name": "sqrt"}, "eval": {"posthoc_tau": 1.0}}
                       ) == "focal+w=effective_number+rs=sqrt+posthoc"
    assert trick_label({"loss": {"name": "ldam", "class_weights": "effective_number",
                                 "reweight_from_epoch": 30}}) == "ldam+w=effective_number+drw"
    assert trick_label({"loss": {"name": "ce", "class_weights": "inverse", "reweight_from_epoch": 1}}
                       ) == "ce+w=inverse"  # weights from the first epoch are not deferred
    assert trick_label({"loss": {"name": "ce", "class_weights": "inverse", "reweight_from_fraction": 0.75}}
                       ) == "ce+w=inverse+drw"
    assert trick_label({"loss": {"name": "ce", "class_weights": "inverse", "reweight_from_fraction": 0.0}}
                       ) == "ce+w=inverse"
    # knobs of a trick are not part of it; DRW without weights is not a trick (and an error)
    assert trick_label({"loss": {"name": "logit_adjusted", "tau": 1.5}, "eval": {"posthoc_tau": 0.0}}
                       ) == "logit_adjusted"


def test_trick_label_of_composed_configs(make_cfg: MakeCfg) -> None:
    assert trick_label(make_cfg()) == "ce"
    assert trick_label(make_cfg("loss=class_balanced", "resampling=progressive")) == "class_balanced+rs=progressive"
    assert trick_label(make_cfg("loss=ce", "loss.class_weights=inverse", "loss.reweight_from_epoch=5",
                                "eval.posthoc_tau=1")) == "ce+w=inverse+drw+posthoc"


@pytest.mark.parametrize(("value", "text"), [(0.9999, "0.9999"), (0.999, "0.999"), (0.013678412345, "0.0137"),
                                             (1e-06, "1e-06"), (0.5, "0.5"), (2.0, "2"), (0.123456789, "0.123")])
def test_short_numbers_keep_short_decimals_exact(value: float, text: str) -> None:
    from imbsweep.trick import short_number

    assert short_number(value) == text


def test_trick_labels_of_the_new_tricks(make_cfg: MakeCfg) -> None:
    assert trick_label(make_cfg()) == "ce"
    assert trick_label(make_cfg("model.max_norm=1")) == "ce+maxnorm"
    assert trick_label(make_cfg("eval.taunorm_tau=0.5")) == "ce+taunorm"
    assert trick_label(make_cfg("stage2=crt")) == "ce+crt"
    assert trick_label(make_cfg("stage2=lws", "resampling=sqrt")) == "ce+rs=sqrt+lws"
    assert trick_label(make_cfg("augment=mixup")) == "ce+mixup"
    assert trick_label(make_cfg("augment=mixup", "augment.alpha=0")) == "ce"  # no mixing
    assert trick_label(make_cfg("augment=remix", "loss.class_weights=inverse", "loss.reweight_from_fraction=0.5")
                       ) == "ce+w=inverse+drw+remix"
