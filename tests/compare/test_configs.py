"""The config column: what each arm of a tournament searched, from the sweep file's own settings."""

from __future__ import annotations

import yaml

from imbsweep._paths import PACKAGE_CONF


def test_the_config_column_shows_what_each_arm_searched() -> None:
    """From tricks.yaml's own settings: an arm's searched keys (its own search expressions
    included, the keys it fixes not), conditions decided on the run's values."""

    from imbsweep.compare import describe_config, searched_keys, sweep_space
    from imbsweep.compare._configs import arm_fixed
    from imbsweep.results import StudyRecord

    conf = yaml.safe_load((PACKAGE_CONF / "sweep" / "tricks.yaml").read_text())["hydra"]["sweeper"]
    record = StudyRecord("t", "", None, "0", None, None, sweep_settings=conf)
    row = {"params.optimizer.lr": "0.01", "params.trainer.batch_size": "64", "params.optimizer.weight_decay": "1e-05",
           "params.loss.class_weights": "inverse", "params.loss.reweight_from_fraction": "0.6",
           "params.loss.label_smoothing": "0.1", "params.loss.beta": "0.999", "params.eval.posthoc_tau": "0.0",
           "tags.imbsweep.choice.loss": "ce", "tags.imbsweep.choice.resampling": "none"}
    keys = [k for k in searched_keys(sweep_space(record, "ce_drw"), row) if k not in arm_fixed(record)["ce_drw"]]
    assert describe_config(row, keys) == ("lr=0.01 batch=64 weight_decay=1e-05 class_weights=inverse smoothing=0.1 "
                                          "reweight_from_fraction=0.6")
    keys = searched_keys(sweep_space(record, "ce"), {**row, "params.loss.class_weights": "none"})
    assert keys == ["optimizer.lr", "trainer.batch_size", "optimizer.weight_decay", "loss.label_smoothing"]
    assert "loss" in arm_fixed(record)["ce_resampling"] and "resampling" not in arm_fixed(record)["ce_resampling"]
