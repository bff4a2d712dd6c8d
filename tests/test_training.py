"""``fit`` on the real composed config (shrunk), with a reporter that records what it hears."""

from __future__ import annotations

import numpy as np
import pytest

from imbsweep.data import clear_memory_cache
from imbsweep.errors import ConfigError
from imbsweep.training import fit, prepare

from .helpers.reporting import Recorder

DIVERGE = ("data=digits_lt", "trainer.epochs=2", "model=logreg", "optimizer=sgd", "optimizer.lr=1e30",
           "scheduler=constant")


def test_fit_reports_every_epoch_and_selects_the_best(make_cfg) -> None:
    cfg = make_cfg("trainer.epochs=6")
    rec = Recorder()
    res = fit(cfg, rec)
    assert res.state == "complete" and rec.result is res
    assert rec.info is not None and rec.info.epochs == 6 and rec.info.device == "cpu"
    assert [e for e, _ in rec.epochs] == [1, 2, 3, 4, 5, 6]
    first = rec.epochs[0][1]
    assert {"train/loss", "train/lr", "val/balanced_acc", "val/macro_f1", "val/gmean",
            "val/worst_class_recall", "val/ece", "val/recall/0", "val/acc_few"} <= first.keys()
    assert not any(k.startswith("test/") for _, m in rec.epochs for k in m)  # test: end only
    history = [m["val/balanced_acc"] for _, m in rec.epochs]
    assert res.best_epoch == int(np.argmax(history)) + 1  # first epoch with the best value
    assert res.objective == max(history) == res.metrics["val/balanced_acc"]
    assert {"test/balanced_acc", "test/acc_few", "test/ece", "best_epoch"} <= res.metrics.keys()
    assert res.test is not None and res.test.confusion.sum() == 500  # 50 per class


def test_minimize_direction_and_early_stopping(make_cfg) -> None:
    cfg = make_cfg("trainer.epochs=40", "trainer.patience=2", "objective.metric=val/ece",
                   "objective.direction=minimize", "optimizer.lr=0.05")
    rec = Recorder()
    res = fit(cfg, rec)
    ece = [m["val/ece"] for _, m in rec.epochs]
    assert res.best_epoch == int(np.argmin(ece)) + 1
    # ECE rises after a few epochs at this learning rate (deterministic on CPU: best epoch 2), so
    # training stops early, exactly `patience` epochs after the best
    assert res.epochs_run < 40 and res.epochs_run - res.best_epoch == 2


def test_same_seed_same_metrics_and_another_seed_differs(make_cfg) -> None:
    a = fit(make_cfg("trainer.seed=3")).metrics
    b = fit(make_cfg("trainer.seed=3")).metrics
    c = fit(make_cfg("trainer.seed=4")).metrics
    a.pop("fit_time_s"), b.pop("fit_time_s"), c.pop("fit_time_s")
    assert a == b
    assert a != c


def test_nan_loss_ends_as_failed_with_the_reason(make_cfg) -> None:
    rec = Recorder()
    res = fit(make_cfg(*DIVERGE, tiny=False), rec)
    assert res.state == "failed" and res.objective is None
    assert res.reason is not None and "train/loss is nan at epoch 1" in res.reason
    assert rec.result is res


def test_a_reporter_can_stop_training(make_cfg) -> None:
    rec = Recorder(stop_at=2)
    with pytest.raises(StopIteration):
        fit(make_cfg("trainer.epochs=5"), rec)
    assert len(rec.epochs) == 2


@pytest.mark.parametrize(("override", "message"), [
    ("optimizer.lr=0", r"optimizer.lr=0: must be a finite number > 0"),
    ("trainer.batch_size=0", r"trainer.batch_size=0: must be an integer >= 1"),
    ("objective.metric=test/acc", r"objective.metric='test/acc': must be a validation metric"),
    ("objective.metric=val/nope", r"objective.metric='val/nope': is not a metric this run logs"),
    ("+model.width=3", r"model.width=3: not an argument of imbsweep.models.MLP; allowed: "
                       r"hidden_sizes, dropout"),
    ("optimizer=sgd optimizer.momentum=1.5", r"optimizer.momentum=1.5: must be in \[0, 1\)"),
    ("+metrics.shots.medium=5", r"metrics.shots.medium=5: unknown key; allowed: few_below, many_above"),
    ("metrics.shots.few_below=500", r"metrics.shots.few_below=500: must be <= metrics.shots.many_above"),
])
def test_bad_values_are_config_errors(make_cfg, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        fit(make_cfg(*override.split()))


def test_shot_thresholds_reach_the_result(make_cfg) -> None:
    res = fit(make_cfg("metrics.shots.few_below=30", "metrics.shots.many_above=60"))
    assert (res.shots.few_below, res.shots.many_above) == (30, 60)
    # digits_lt counts 100 77 59 46 35 27 21 16 12 10: many > 60, few < 30
    assert {"test/acc_many", "test/acc_medium", "test/acc_few"} <= res.metrics.keys()
    assert res.shots.of(res.train_class_counts)["many"].sum() == 2


def test_prepare_uses_the_dataset_cache(make_cfg, tmp_path) -> None:
    clear_memory_cache()
    prepare(make_cfg())
    assert len(list((tmp_path / "mlruns" / "datasets").glob("digits_lt-*.npz"))) == 1


@pytest.mark.parametrize("loss", ["ce", "focal", "class_balanced", "ldam", "logit_adjusted",
                                  "balanced_softmax"])
def test_every_loss_trains_through_the_composed_config(make_cfg, loss: str) -> None:
    cfg = make_cfg(f"loss={loss}", "resampling=sqrt")
    setup = prepare(cfg)
    if loss == "ldam":
        from imbsweep.models import NormedLinear
        assert isinstance(setup.model.head, NormedLinear)  # the paper's normalised classifier
    result = fit(cfg, setup=setup)
    assert result.state == "complete" and 0 <= result.metrics["test/balanced_acc"] <= 1
    again = fit(make_cfg(f"loss={loss}", "resampling=sqrt"))
    assert again.metrics["test/balanced_acc"] == result.metrics["test/balanced_acc"]  # seeded


def test_posthoc_scan_picks_tau_on_validation(make_cfg) -> None:
    from imbsweep.posthoc import POSTHOC_METRICS

    result = fit(make_cfg("trainer.epochs=3", "eval.posthoc_grid=[0.0,0.5,1.0,2.0]"))
    scan = result.posthoc
    assert scan is not None and scan.taus == (0.0, 0.5, 1.0, 2.0) and scan.metric == "balanced_acc"
    assert scan.tau == scan.taus[int(np.argmax(scan.val))]
    m = result.metrics
    assert m["posthoc/tau"] == scan.tau
    assert m["val/balanced_acc_posthoc"] == pytest.approx(max(scan.val))
    assert m["test/balanced_acc_posthoc"] == pytest.approx(scan.test[scan.taus.index(scan.tau)])
    assert {f"test/{k}_posthoc" for k in POSTHOC_METRICS} <= set(m)
    assert scan.val[0] == pytest.approx(m["val/balanced_acc"])  # tau 0 is the unadjusted model


def test_posthoc_tau_adjusts_every_reported_metric(make_cfg) -> None:
    from imbsweep._paths import cache_dir
    from imbsweep.data import load_dataset
    from imbsweep.posthoc import posthoc_probs
    from imbsweep.training import predict_logits

    base = ("trainer.epochs=2", "trainer.patience=null")
    plain = fit(make_cfg(*base))
    cfg = make_cfg(*base, "eval.posthoc_tau=1.0")
    setup = prepare(cfg)
    adjusted = fit(cfg, setup=setup)
    # same training (the adjustment is at evaluation only), so the scans agree
    assert plain.posthoc == adjusted.posthoc
    # and the reported test metric is the tau=1 prediction of the selected weights
    ds = load_dataset(cfg.data, cache_dir(cfg))
    logits = predict_logits(setup.model, __import__("torch").as_tensor(ds.x_test), 512)
    log_prior = np.log(ds.train_class_counts / ds.train_class_counts.sum())
    pred = posthoc_probs(logits, log_prior, 1.0).argmax(axis=1)
    assert adjusted.metrics["test/acc"] == pytest.approx(float((pred == ds.y_test).mean()))


@pytest.mark.parametrize(("override", "message"), [
    ("eval.posthoc_tau=-1", "eval.posthoc_tau=-1: must be a finite number >= 0"),
    ("eval.posthoc_grid=[]", "eval.posthoc_grid=.*non-empty list"),
    ("+eval.tau=1", "eval.tau=1: unknown key; allowed: posthoc_tau, posthoc_grid, taunorm_tau, taunorm_grid"),
    ("resampling.name=smote", "resampling.name='smote': must be one of"),
    ("loss=focal loss.label_smoothing=0.1", "loss.label_smoothing=0.1: must be 0 for loss 'focal'"),
    ("loss.class_weights=inverse loss.reweight_from_epoch=3",
     r"loss.reweight_from_epoch=3: must be <= trainer.epochs \(2\)"),
])
def test_bad_trick_values_are_config_errors(make_cfg, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        prepare(make_cfg(*override.split()))
