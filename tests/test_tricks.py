"""Weight balancing (MaxNorm), τ-normalisation, classifier re-training and mixup/Remix through
the real composed config and ``fit``, then through the real CLI into a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imbsweep.errors import ConfigError
from imbsweep.metrics import clean
from imbsweep.training import Result, fit, prepare
from imbsweep.trick import trick_label

from .helpers.cli import TINY, run_cli
from .helpers.reporting import Recorder
from .helpers.stores import mlflow_client


def _metrics(result: Result) -> dict[str, float]:
    m = dict(result.metrics)
    m.pop("fit_time_s")
    return m


def test_mixup_with_alpha_zero_is_the_plain_run_exactly(make_cfg) -> None:
    plain = _metrics(fit(make_cfg()))
    assert _metrics(fit(make_cfg("augment=mixup", "augment.alpha=0"))) == plain
    assert _metrics(fit(make_cfg("augment=remix", "augment.alpha=0"))) == plain
    rec, plain_rec = Recorder(), Recorder()
    fit(make_cfg(), plain_rec)
    mixed = _metrics(fit(make_cfg("augment=mixup", "augment.alpha=0.4"), rec))
    assert mixed != plain and rec.epochs[0][1]["train/loss"] != plain_rec.epochs[0][1]["train/loss"]


def test_remix_is_mixup_when_it_relabels_nothing_and_seeded(make_cfg) -> None:
    mixup = _metrics(fit(make_cfg("augment=mixup", "augment.alpha=0.4")))
    # tau = 0: "lambda < tau" never holds, so every label weight is mixup's lambda
    assert _metrics(fit(make_cfg("augment=remix", "augment.alpha=0.4", "augment.tau=0"))) == mixup
    remix = _metrics(fit(make_cfg("augment=remix", "augment.alpha=0.4")))
    assert remix != mixup
    assert _metrics(fit(make_cfg("augment=remix", "augment.alpha=0.4"))) == remix  # same seed, same run


def test_max_norm_bounds_the_trained_classifier_and_a_loose_bound_is_the_plain_run(make_cfg) -> None:
    cfg = make_cfg("model.max_norm=0.3", "trainer.epochs=3")
    setup = prepare(cfg)
    fit(cfg, setup=setup)
    assert (setup.model.head.weight.norm(dim=1) <= 0.3 * (1 + 1e-6)).all()
    plain = prepare(make_cfg("trainer.epochs=3"))
    fit(make_cfg("trainer.epochs=3"), setup=plain)
    assert (plain.model.head.weight.norm(dim=1) > 0.3).any()  # without it the rows grow past the bound
    # a bound no row reaches never projects: exactly the plain run
    assert _metrics(fit(make_cfg("model.max_norm=1e6"))) == _metrics(fit(make_cfg()))


def test_taunorm_scan_at_tau_zero_is_the_plain_prediction(make_cfg) -> None:
    result = fit(make_cfg("trainer.epochs=3", "eval.taunorm_grid=[0.0,0.5,1.0,1.5]"))
    scan, m = result.taunorm, result.metrics
    assert scan is not None and scan.taus == (0.0, 0.5, 1.0, 1.5) and scan.metric == "balanced_acc"
    # metrics are logged to 12 significant digits (clean); the scan keeps the raw values
    assert clean(scan.val[0]) == m["val/balanced_acc"] and clean(scan.test[0]) == m["test/balanced_acc"]
    assert scan.tau == scan.taus[int(np.argmax(scan.val))] == m["taunorm/tau"]
    assert m["val/balanced_acc_taunorm"] == clean(max(scan.val))
    assert m["test/balanced_acc_taunorm"] == clean(scan.test[scan.taus.index(scan.tau)])
    assert {f"{s}/{k}_taunorm" for s in ("val", "test") for k in
            ("acc", "balanced_acc", "macro_f1", "gmean", "worst_class_recall")} <= set(m)
    # the objective's own metric picks tau: macro-F1 here
    other = fit(make_cfg("trainer.epochs=3", "objective.metric=val/macro_f1"))
    assert other.taunorm is not None and other.taunorm.metric == "macro_f1"


def test_taunorm_tau_reports_the_normalised_classifier(make_cfg) -> None:
    # the epoch is selected on the tau-normalised classifier's validation metric, so the weights
    # may be another epoch's than the plain run's; what is reported is their tau = 1 prediction
    cfg = make_cfg("trainer.epochs=3", "eval.taunorm_tau=1.0")
    setup = prepare(cfg)
    normed = fit(cfg, setup=setup)
    assert normed.taunorm is not None
    model, ds = setup.model, setup.dataset
    with torch.no_grad():
        feats = model.features(torch.as_tensor(ds.x_test))
        w = model.head.weight
        pred = F.linear(feats, w / w.norm(dim=1, keepdim=True), model.head.bias).argmax(dim=1).numpy()
    assert normed.metrics["test/acc"] == pytest.approx(float((pred == ds.y_test).mean()))
    assert normed.metrics["test/balanced_acc"] == clean(normed.taunorm.test[normed.taunorm.taus.index(1.0)])


@pytest.mark.parametrize("stage", ["crt", "lws"])
def test_stage2_retrains_only_the_classifier_after_the_selected_epoch(make_cfg, stage: str) -> None:
    plain_cfg = make_cfg("trainer.epochs=3")
    plain_setup = prepare(plain_cfg)
    plain = fit(plain_cfg, setup=plain_setup)
    cfg = make_cfg("trainer.epochs=3", f"stage2={stage}", "stage2.epochs=4", "stage2.lr=0.05")
    setup, rec = prepare(cfg), Recorder()
    result = fit(cfg, rec, setup)
    assert rec.info is not None and rec.info.epochs == 7
    assert [e for e, _ in rec.epochs] == [1, 2, 3, 4, 5, 6, 7]  # stage 2 reported after the main run
    m = result.metrics
    assert (m["stage1/epochs_run"], m["stage2/epochs_run"], m["epochs_run"]) == (3, 4, 7)
    assert m["stage1/best_epoch"] == plain.best_epoch and m["stage1/val/balanced_acc"] == plain.metrics[
        "val/balanced_acc"]  # stage 1 is the plain run
    stage2_vals = [e["val/balanced_acc"] for _, e in rec.epochs[3:]]
    assert 4 <= result.best_epoch <= 7 and m["val/balanced_acc"] == max(stage2_vals)
    assert result.best_epoch == 4 + int(np.argmax(stage2_vals))
    # the features are stage 1's selected ones, untouched
    for a, b in zip(setup.model.features.state_dict().values(), plain_setup.model.features.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    head = setup.model.head
    if stage == "crt":
        assert not torch.equal(head.weight, plain_setup.model.head.weight)
    else:  # LWS: the same classifier, under learnt scales
        assert torch.equal(head.base.weight, plain_setup.model.head.weight)
        assert not torch.equal(head.scales.detach(), torch.ones(10))
    assert _metrics(fit(cfg)) == _metrics(result)  # seeded


def test_trick_labels_of_the_new_tricks(make_cfg) -> None:
    assert trick_label(make_cfg()) == "ce"
    assert trick_label(make_cfg("model.max_norm=1")) == "ce+maxnorm"
    assert trick_label(make_cfg("eval.taunorm_tau=0.5")) == "ce+taunorm"
    assert trick_label(make_cfg("stage2=crt")) == "ce+crt"
    assert trick_label(make_cfg("stage2=lws", "resampling=sqrt")) == "ce+rs=sqrt+lws"
    assert trick_label(make_cfg("augment=mixup")) == "ce+mixup"
    assert trick_label(make_cfg("augment=mixup", "augment.alpha=0")) == "ce"  # no mixing
    assert trick_label(make_cfg("augment=remix", "loss.class_weights=inverse", "loss.reweight_from_fraction=0.5")
                       ) == "ce+w=inverse+drw+remix"


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.max_norm=0"], r"model.max_norm=0: must be null \(no MaxNorm\) or a finite number > 0"),
    (["loss=ldam", "model.max_norm=1"], r"model.max_norm=1.0: has no effect with loss=ldam: its normalised "
                                        r"classifier ignores the norms of its class weights"),
    (["eval.taunorm_tau=-1"], r"eval.taunorm_tau=-1: must be a finite number >= 0"),
    (["eval.taunorm_grid=[]"], r"eval.taunorm_grid=.*non-empty list"),
    (["loss=ldam", "eval.taunorm_tau=1"], r"eval.taunorm_tau=1.0: has no effect with loss=ldam"),
    (["stage2=crt", "stage2.epochs=0"], r"stage2.epochs=0: must be an integer >= 1"),
    (["stage2=lws", "stage2.lr=-1"], r"stage2.lr=-1: must be a finite number > 0"),
    (["augment=mixup", "augment.alpha=-0.5"], r"augment.alpha=-0.5: must be a finite number >= 0"),
    (["augment=remix", "augment.kappa=0.5"], r"augment.kappa=0.5: must be a finite number >= 1"),
    (["augment=remix", "augment.tau=2"], r"augment.tau=2: must be a number in \[0, 1\]"),
    (["+eval.tau=1"], r"eval.tau=1: unknown key; allowed: posthoc_tau, posthoc_grid, taunorm_tau, taunorm_grid"),
])
def test_bad_trick_settings_are_config_errors(make_cfg, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        prepare(make_cfg(*overrides))


def _runs(workdir: Path, experiment: str) -> list:
    client = mlflow_client(workdir)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def test_a_run_with_the_tricks_records_them_in_mlflow(workdir: Path) -> None:
    p = run_cli(workdir, "run", *TINY, "tracking.experiment=new_tricks", "stage2=crt", "stage2.epochs=3",
                "augment=remix", "model.max_norm=1.0")
    assert p.returncode == 0, p.stderr
    (run,) = _runs(workdir, "new_tricks")
    params, metrics = run.data.params, run.data.metrics
    assert (params["stage2.name"], params["stage2.epochs"], params["stage2.lr"]) == ("crt", "3", "0.01")
    assert (params["augment.name"], params["augment.kappa"], params["augment.tau"]) == ("remix", "3.0", "0.5")
    assert params["model.max_norm"] == "1.0" and params["eval.taunorm_tau"] == "0.0"
    assert run.data.tags["imbsweep.trick"] == "ce+remix+maxnorm+crt"
    assert run.data.tags["imbsweep.choice.stage2"] == "crt" and run.data.tags["imbsweep.choice.augment"] == "remix"
    # stage 2's epochs are part of the record: the curves go on after the main run's 2 epochs
    client = mlflow_client(workdir)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/balanced_acc")] == [1, 2, 3, 4, 5]
    assert (metrics["stage1/epochs_run"], metrics["stage2/epochs_run"], metrics["epochs_run"]) == (2, 3, 5)
    assert 3 <= metrics["best_epoch"] <= 5 and "stage1/best_epoch" in metrics
    # the tau-norm scan, as every run reports it (the selected val value under val/selected)
    assert {"taunorm/tau", "test/balanced_acc_taunorm", "val/selected/balanced_acc_taunorm"} <= set(metrics)


def test_bad_trick_input_is_one_line_exit_2_and_no_run(tmp_path: Path) -> None:
    # every trick setting is checked in prepare, before the run exists (the messages: above)
    overrides, words = ["loss=ldam", "model.max_norm=2"], ["model.max_norm=2.0", "no effect with loss=ldam"]
    p = run_cli(tmp_path, "run", *TINY, *overrides)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("imbsweep: error: "), p.stderr
    assert all(w in lines[0] for w in words), lines[0]
    db = tmp_path / "mlruns" / "mlflow.db"
    assert not db.exists() or not _runs(tmp_path, "imbsweep")
