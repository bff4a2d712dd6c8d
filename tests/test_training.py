"""``fit`` on the real composed config (shrunk), with a reporter that records what it hears;
the tricks that act inside training and evaluation among it: weight balancing (MaxNorm),
τ-normalisation, classifier re-training and mixup/Remix."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imbsweep.data import clear_memory_cache
from imbsweep.errors import ConfigError
from imbsweep.metrics import clean
from imbsweep.reporting import FitInfo, Reporter
from imbsweep.training import Result, fit, prepare
from tests.helpers.configs import MakeCfg
from tests.helpers.models import classifier, linear_head, scaled_head

DIVERGE = ("data=digits_lt", "trainer.epochs=2", "model=logreg", "optimizer=sgd", "optimizer.lr=1e30",
           "scheduler=constant")


class Recorder(Reporter):
    def __init__(self, stop_at: int | None = None) -> None:
        self.info: FitInfo | None = None
        self.epochs: list[tuple[int, dict[str, float]]] = []
        self.result: Result | None = None
        self.stop_at = stop_at

    def on_fit_start(self, info: FitInfo) -> None:
        self.info = info

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.epochs.append((epoch, dict(metrics)))
        if epoch == self.stop_at:
            raise StopIteration("stop requested by the reporter")

    def on_fit_end(self, result: Result) -> None:
        self.result = result


def test_fit_reports_every_epoch_and_selects_the_best(make_cfg: MakeCfg) -> None:
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


def test_minimize_direction_and_early_stopping(make_cfg: MakeCfg) -> None:
    cfg = make_cfg("trainer.epochs=40", "trainer.patience=2", "objective.metric=val/ece",
                   "objective.direction=minimize", "optimizer.lr=0.05")
    rec = Recorder()
    res = fit(cfg, rec)
    ece = [m["val/ece"] for _, m in rec.epochs]
    assert res.best_epoch == int(np.argmin(ece)) + 1
    # ECE rises after a few epochs at this learning rate (deterministic on CPU: best epoch 2), so
    # training stops early, exactly `patience` epochs after the best
    assert res.epochs_run < 40 and res.epochs_run - res.best_epoch == 2


def test_same_seed_same_metrics_and_another_seed_differs(make_cfg: MakeCfg) -> None:
    a = fit(make_cfg("trainer.seed=3")).metrics
    b = fit(make_cfg("trainer.seed=3")).metrics
    c = fit(make_cfg("trainer.seed=4")).metrics
    a.pop("fit_time_s"), b.pop("fit_time_s"), c.pop("fit_time_s")
    assert a == b
    assert a != c


def test_nan_loss_ends_as_failed_with_the_reason(make_cfg: MakeCfg) -> None:
    rec = Recorder()
    res = fit(make_cfg(*DIVERGE, tiny=False), rec)
    assert res.state == "failed" and res.objective is None
    assert res.reason is not None and "train/loss is nan at epoch 1" in res.reason
    assert rec.result is res


def test_a_reporter_can_stop_training(make_cfg: MakeCfg) -> None:
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
    ("optimizer=sgd optimizer.momentum=1.5", r"optimizer.momentum=1.5: must be a finite number in \[0, 1\)"),
    ("+metrics.shots.medium=5", r"metrics.shots.medium=5: unknown key; allowed: few_below, many_above"),
    ("metrics.shots.few_below=500", r"metrics.shots.few_below=500: must be <= metrics.shots.many_above"),
])
def test_bad_values_are_config_errors(make_cfg: MakeCfg, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        fit(make_cfg(*override.split()))


def test_shot_thresholds_reach_the_result(make_cfg: MakeCfg) -> None:
    res = fit(make_cfg("metrics.shots.few_below=30", "metrics.shots.many_above=60"))
    assert (res.shots.few_below, res.shots.many_above) == (30, 60)
    # digits_lt counts 100 77 59 46 35 27 21 16 12 10: many > 60, few < 30
    assert {"test/acc_many", "test/acc_medium", "test/acc_few"} <= res.metrics.keys()
    assert res.shots.of(res.train_class_counts)["many"].sum() == 2


def test_prepare_uses_the_dataset_cache(make_cfg: MakeCfg, tmp_path: Path) -> None:
    clear_memory_cache()
    prepare(make_cfg())
    assert len(list((tmp_path / "mlruns" / "datasets").glob("digits_lt-*.npz"))) == 1


@pytest.mark.parametrize("loss", ["ce", "focal", "class_balanced", "ldam", "logit_adjusted",
                                  "balanced_softmax"])
def test_every_loss_trains_through_the_composed_config(make_cfg: MakeCfg, loss: str) -> None:
    cfg = make_cfg(f"loss={loss}", "resampling=sqrt")
    setup = prepare(cfg)
    if loss == "ldam":
        from imbsweep.models import NormedLinear
        assert isinstance(setup.model.head, NormedLinear)  # the paper's normalised classifier
    result = fit(cfg, setup=setup)
    assert result.state == "complete" and 0 <= result.metrics["test/balanced_acc"] <= 1
    again = fit(make_cfg(f"loss={loss}", "resampling=sqrt"))
    assert again.metrics["test/balanced_acc"] == result.metrics["test/balanced_acc"]  # seeded


def test_posthoc_scan_picks_tau_on_validation(make_cfg: MakeCfg) -> None:
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


def test_posthoc_tau_adjusts_every_reported_metric(make_cfg: MakeCfg) -> None:
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
    ("+resampling.name=smote", "resampling.name='smote': not an argument of imbsweep.resampling.NoResampling; "
                               "it takes none; to choose another option: resampling=<option>"),
    ("resampling._target_=my.Smote", "resampling._target_='my.Smote': cannot be imported"),
    ("loss=focal loss.label_smoothing=0.1", "loss.label_smoothing=0.1: must be 0 for loss 'focal'"),
    ("loss.class_weights=inverse loss.reweight_from_epoch=3",
     r"loss.reweight_from_epoch=3: must be <= trainer.epochs \(2\)"),
])
def test_bad_trick_values_are_config_errors(make_cfg: MakeCfg, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        prepare(make_cfg(*override.split()))


def _metrics(result: Result) -> dict[str, float]:
    m = dict(result.metrics)
    m.pop("fit_time_s")
    return m


def test_mixup_with_alpha_zero_is_the_plain_run_exactly(make_cfg: MakeCfg) -> None:
    plain = _metrics(fit(make_cfg()))
    assert _metrics(fit(make_cfg("augment=mixup", "augment.alpha=0"))) == plain
    assert _metrics(fit(make_cfg("augment=remix", "augment.alpha=0"))) == plain
    rec, plain_rec = Recorder(), Recorder()
    fit(make_cfg(), plain_rec)
    mixed = _metrics(fit(make_cfg("augment=mixup", "augment.alpha=0.4"), rec))
    assert mixed != plain and rec.epochs[0][1]["train/loss"] != plain_rec.epochs[0][1]["train/loss"]


def test_remix_is_mixup_when_it_relabels_nothing_and_seeded(make_cfg: MakeCfg) -> None:
    mixup = _metrics(fit(make_cfg("augment=mixup", "augment.alpha=0.4")))
    # tau = 0: "lambda < tau" never holds, so every label weight is mixup's lambda
    assert _metrics(fit(make_cfg("augment=remix", "augment.alpha=0.4", "augment.tau=0"))) == mixup
    remix = _metrics(fit(make_cfg("augment=remix", "augment.alpha=0.4")))
    assert remix != mixup
    assert _metrics(fit(make_cfg("augment=remix", "augment.alpha=0.4"))) == remix  # same seed, same run


def test_max_norm_bounds_the_trained_classifier_and_a_loose_bound_is_the_plain_run(make_cfg: MakeCfg) -> None:
    cfg = make_cfg("model.max_norm=0.3", "trainer.epochs=3")
    setup = prepare(cfg)
    fit(cfg, setup=setup)
    assert (linear_head(setup.model).weight.norm(dim=1) <= 0.3 * (1 + 1e-6)).all()
    plain = prepare(make_cfg("trainer.epochs=3"))
    fit(make_cfg("trainer.epochs=3"), setup=plain)
    assert (linear_head(plain.model).weight.norm(dim=1) > 0.3).any()  # without it the rows grow past the bound
    # a bound no row reaches never projects: exactly the plain run
    assert _metrics(fit(make_cfg("model.max_norm=1e6"))) == _metrics(fit(make_cfg()))


def test_taunorm_scan_at_tau_zero_is_the_plain_prediction(make_cfg: MakeCfg) -> None:
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


def test_taunorm_tau_reports_the_normalised_classifier(make_cfg: MakeCfg) -> None:
    # the epoch is selected on the tau-normalised classifier's validation metric, so the weights
    # may be another epoch's than the plain run's; what is reported is their tau = 1 prediction
    cfg = make_cfg("trainer.epochs=3", "eval.taunorm_tau=1.0")
    setup = prepare(cfg)
    normed = fit(cfg, setup=setup)
    assert normed.taunorm is not None
    model, head, ds = classifier(setup.model), linear_head(setup.model), setup.dataset
    with torch.no_grad():
        feats = model.features(torch.as_tensor(ds.x_test))
        w = head.weight
        pred = F.linear(feats, w / w.norm(dim=1, keepdim=True), head.bias).argmax(dim=1).numpy()
    assert normed.metrics["test/acc"] == pytest.approx(float((pred == ds.y_test).mean()))
    assert normed.metrics["test/balanced_acc"] == clean(normed.taunorm.test[normed.taunorm.taus.index(1.0)])


@pytest.mark.parametrize("stage", ["crt", "lws"])
def test_stage2_retrains_only_the_classifier_after_the_selected_epoch(make_cfg: MakeCfg, stage: str) -> None:
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
    for a, b in zip(classifier(setup.model).features.state_dict().values(),
                    classifier(plain_setup.model).features.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    if stage == "crt":
        assert not torch.equal(linear_head(setup.model).weight, linear_head(plain_setup.model).weight)
    else:  # LWS: the same classifier, under learnt scales
        scaled, base = scaled_head(setup.model)
        assert torch.equal(base.weight, linear_head(plain_setup.model).weight)
        assert not torch.equal(scaled.scales.detach(), torch.ones(10))
    assert _metrics(fit(cfg)) == _metrics(result)  # seeded


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.max_norm=0"], r"model.max_norm=0: must be a finite number > 0 or null"),
    (["loss=ldam", "model.max_norm=1"], r"model.max_norm=1.0: has no effect with loss=ldam: its normalised "
                                        r"classifier ignores the norms of its class weights"),
    (["eval.taunorm_tau=-1"], r"eval.taunorm_tau=-1: must be a finite number >= 0"),
    (["eval.taunorm_grid=[]"], r"eval.taunorm_grid=.*non-empty list"),
    (["loss=ldam", "eval.taunorm_tau=1"], r"eval.taunorm_tau=1.0: has no effect with loss=ldam"),
    (["stage2=crt", "stage2.epochs=0"], r"stage2.epochs=0: must be an integer >= 1"),
    (["stage2=lws", "stage2.lr=-1"], r"stage2.lr=-1: must be a finite number > 0"),
    (["augment=mixup", "augment.alpha=-0.5"], r"augment.alpha=-0.5: must be a finite number >= 0"),
    (["augment=remix", "augment.kappa=0.5"], r"augment.kappa=0.5: must be a finite number >= 1"),
    (["augment=remix", "augment.tau=2"], r"augment.tau=2: must be a finite number in \[0, 1\]"),
    (["+eval.tau=1"], r"eval.tau=1: unknown key; allowed: posthoc_tau, posthoc_grid, taunorm_tau, taunorm_grid"),
])
def test_bad_trick_settings_are_config_errors(make_cfg: MakeCfg, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        prepare(make_cfg(*overrides))


def test_channels_last_trains_images_in_nhwc_to_the_same_metrics_and_is_checked(make_cfg: MakeCfg,
                                                                               tmp_path: Path) -> None:
    """``trainer.channels_last=true``: the model's convolutions and every batch in NHWC; the same
    seed gives the same metrics twice, and (float32 on the CPU) the plain run's up to rounding."""
    from tests.helpers.data import make_pngs

    root = make_pngs(tmp_path / "pets", {"cat": 20, "dog": 14, "eel": 10}, size=(12, 12))
    images = ("data=image_folder", f"data.path={root}", "data.image_size=8", "data.n_val_per_class=3",
              "data.n_test_per_class=3", "model=resnet", "model.depth=8", "model.width=4", "trainer.epochs=2",
              "trainer.batch_size=8")
    seen: list[torch.memory_format] = []
    plain = fit(make_cfg(*images, tiny=False))
    cfg = make_cfg(*images, "trainer.channels_last=true", tiny=False)
    setup = prepare(cfg)
    conv = next(m for m in setup.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_pre_hook(lambda _, args: seen.append(
        torch.channels_last if args[0].is_contiguous(memory_format=torch.channels_last) and
        not args[0].is_contiguous() else torch.contiguous_format))
    nhwc = fit(cfg, setup=setup)
    assert seen and set(seen) == {torch.channels_last}  # every batch, training and evaluation
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    again = fit(make_cfg(*images, "trainer.channels_last=true", tiny=False))
    timed = {"fit_time_s"}
    assert {k: v for k, v in again.metrics.items() if k not in timed} == \
        {k: v for k, v in nhwc.metrics.items() if k not in timed}
    for k, v in plain.metrics.items():
        assert k in timed or nhwc.metrics[k] == pytest.approx(v, rel=1e-4, abs=1e-5), k
    with pytest.raises(ConfigError, match=r"trainer.channels_last=True: needs image data .* shape \(64,\)"):
        prepare(make_cfg("trainer.channels_last=true"))
    with pytest.raises(ConfigError, match=r"trainer.channels_last='yes': must be true or false"):
        prepare(make_cfg("trainer.channels_last=yes"))


@pytest.mark.parametrize("width", [80, 120])
def test_a_progress_line_fits_the_terminal_and_keeps_its_times(width: int) -> None:
    """The bar sweeps and runs draw: on a terminal of ``width`` columns, a long label and a
    long status are cut (…) before the counts, the elapsed time and the ETA; into a file the
    last state is one whole line."""
    import io

    from rich.console import Console

    from imbsweep.reporting import make_progress

    status = "best 0.8612 val/balanced_acc (class_balanced_resampling) · 19 pruned · 3 failed"
    buf = io.StringIO()
    p = make_progress("a_study_name_that_goes_on_and_on_and_on", "trials",
                      Console(file=buf, force_terminal=True, color_system=None, width=width))
    p.add_task("sweep", total=48, completed=12, status=status)
    p.console.print(p.make_tasks_table(p.tasks))
    lines = [line for line in buf.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1 and len(lines[0].rstrip()) <= width
    assert " 12/48 trials " in lines[0] and " eta " in lines[0] and "0:00:00" in lines[0] and "…" in lines[0]
    log = io.StringIO()
    p = make_progress("a_study_name_that_goes_on_and_on_and_on", "trials", Console(file=log, width=80))
    p.add_task("sweep", total=48, completed=48, status=status)
    p.console.print(p.make_tasks_table(p.tasks))
    assert log.getvalue().strip().endswith(status) and "…" not in log.getvalue()
