"""Trick labels: derived from the config (plain dicts and composed configs), never typed; and
the short numbers they are written with."""

from __future__ import annotations

import pytest

from imbsweep.trick import trick_label
from tests.helpers.configs import MakeCfg

CE = "imbsweep.losses.CrossEntropy"


def test_trick_label() -> None:
    assert trick_label({"loss": {"_target_": CE, "class_weights": "none"}}) == "ce"
    assert trick_label({"loss": {"_target_": "imbsweep.losses.Focal", "class_weights": "effective_number"},
                        "resampling": {"_target_": "imbsweep.resampling.SqrtResampler"}, "eval": {"posthoc_tau": 1.0}}
                       ) == "focal+w=effective_number+rs=sqrt+posthoc"
    assert trick_label({"loss": {"_target_": "imbsweep.losses.LDAM", "class_weights": "effective_number",
                                 "reweight_from_epoch": 30}}) == "ldam+w=effective_number+drw"
    assert trick_label({"loss": {"_target_": CE, "class_weights": "inverse", "reweight_from_epoch": 1}}
                       ) == "ce+w=inverse"  # weights from the first epoch are not deferred
    assert trick_label({"loss": {"_target_": CE, "class_weights": "inverse", "reweight_from_fraction": 0.75}}
                       ) == "ce+w=inverse+drw"
    assert trick_label({"loss": {"_target_": CE, "class_weights": "inverse", "reweight_from_fraction": 0.0}}
                       ) == "ce+w=inverse"
    # knobs of a trick are not part of it; DRW without weights is not a trick (and an error)
    assert trick_label({"loss": {"_target_": "imbsweep.losses.LogitAdjusted", "tau": 1.5}, "eval": {"posthoc_tau": 0.0}}
                       ) == "logit_adjusted"


def test_a_trick_of_ones_own_is_named_by_its_class_and_old_records_by_name() -> None:
    from imbsweep.trick import family, trick_names

    assert family({"_target_": "collections.OrderedDict"}) == "ordered_dict"  # no `name`: snake case
    assert family({"_target_": "my_pkg.NotThere"}) == "not_there"  # (the run reports what fails to import)
    assert family(None) == family({}) == "none"
    assert trick_label({"loss": {"name": "ldam"}, "stage2": {"name": "crt"}}) == "ldam+crt"  # made before _target_
    config = {"loss": {"_target_": "imbsweep.losses.LDAM"}, "stage2": {"_target_": "imbsweep.decoupling.NoStage2"},
              "model": {"_target_": "imbsweep.models.MLP"}}
    assert trick_names(config) == {"loss.name": "ldam", "stage2.name": "none"}


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
