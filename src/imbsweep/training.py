"""The task: ``fit(cfg, reporter) -> Result``. It knows nothing about Optuna or MLflow."""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from . import _config
from ._amp import Amp
from ._paths import cache_dir
from .augment import Mixup, build_augment
from .data import DEFAULT_CACHE_MB, Dataset, image_augment, load_dataset
from .decoupling import Stage2, build_stage2, check_head, taunorm_logits
from .errors import ConfigError
from .losses import ImbalanceLoss, build_loss
from .metrics import Evaluation, ShotGroups, clean, evaluate
from .models import Classifier, NormedLinear, classifier_weight_name
from .own_models import HEAD_NEEDED, build_model
from .posthoc import PosthocScan, posthoc_probs, posthoc_scan, scan_metrics, taunorm_scan
from .records import FitInfo, Result
from .reporting import Reporter
from .resampling import Resampler, build_resampler
from .schedulers import RUNTIME_ARGS
from .schedulers import cosine as cosine_schedule
from .trick import family

log = logging.getLogger(__name__)


@dataclass
class Setup:
    """Everything ``fit`` trains with, built (and so checked) before any run is recorded."""

    dataset: Dataset
    model: torch.nn.Module
    loss: ImbalanceLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: str
    steps_per_epoch: int
    resampler: Resampler
    make_optimizer: Callable[..., torch.optim.Optimizer] | None = None  # the optimizer, for other params
    augment: Mixup | None = None  # batch mixing (mixup, Remix); None: none
    stage2: Stage2 | None = None  # classifier re-training after the main run; None: none


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare(cfg: DictConfig, dataset: Dataset | None = None) -> Setup:
    """Check the config and build data, model, loss, optimizer and scheduler.

    Raises:
        ConfigError: any bad value, named by its config key.
    """
    _config.validate(cfg)
    device = _config.resolve_device(cfg.trainer.device)
    Amp(device, cfg.trainer.get("amp", "auto"))  # checks trainer.amp before any run is recorded
    t = cfg.trainer
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    # = use_deterministic_algorithms(deterministic, warn_only=True), without importing
    # torch._inductor (~2 s before a run's first epoch) for a flag only torch.compile reads
    torch.set_deterministic_debug_mode("warn" if t.deterministic else "default")
    ds = dataset if dataset is not None else load_dataset(cfg.data, cache_dir(cfg),
                                                          cfg.get("dataset_cache_mb", DEFAULT_CACHE_MB))
    _config.validate_objective_logged(cfg, ds)  # known from the data: found before training, not after it
    _config.validate_batch_size(t.batch_size, ds, explicit=_config.overridden("trainer.batch_size"))
    if t.get("channels_last", False) and np.ndim(ds.x_train) != 4:
        raise ConfigError("trainer.channels_last", True, "needs image data (examples of C x H x W); this data's "
                                                         f"examples have shape {tuple(np.shape(ds.x_train)[1:])}")
    seed_everything(t.seed)  # after data: model init depends on the seed only
    model = build_model(cfg.model, ds).to(device)  # a model that cannot take this data is an error
    loss = build_loss(cfg.loss, ds.train_class_counts, int(t.epochs))
    if loss.reweight_from_epoch is not None and loss.reweight_from_epoch > t.epochs:
        raise ConfigError("loss.reweight_from_epoch", loss.reweight_from_epoch,
                          f"must be <= trainer.epochs ({t.epochs}), or the weights never switch on")
    head = getattr(model, "head", None)
    in_features = getattr(head, "in_features", None) if decoupled(model) else None
    if in_features is None:
        probe = loss.make_head(1, ds.n_classes)
        if probe is not None:
            raise ConfigError("loss", loss.name, f"{HEAD_NEEDED}; {cfg.model._target_} has none")
    else:
        new_head = loss.make_head(int(in_features), ds.n_classes)
        if new_head is not None:
            model.head = new_head
    model, loss = model.to(device), loss.to(device)
    augment = build_augment(cfg.get("augment"), ds.train_class_counts, int(t.seed))
    stage2 = build_stage2(cfg.get("stage2"))
    check_classifier(cfg, model, stage2)
    resampler = build_resampler(cfg.get("resampling"), torch.as_tensor(ds.y_train), int(t.epochs))
    opt_factory = _config.instantiate_checked(cfg.optimizer, "optimizer", params=None)
    steps = math.ceil(len(ds.y_train) / t.batch_size)
    try:
        optimizer = opt_factory(params=model.parameters())
    except (TypeError, ValueError) as exc:
        raise ConfigError("optimizer", dict(cfg.optimizer), str(exc)) from None
    sched_factory = _config.instantiate_checked(cfg.scheduler, "scheduler",
                                                **dict.fromkeys(RUNTIME_ARGS))
    scheduler = sched_factory(optimizer=optimizer, total_steps=steps * t.epochs,
                              steps_per_epoch=steps)
    return Setup(ds, model, loss, optimizer, scheduler, device, steps, resampler, opt_factory, augment, stage2)


def decoupled(model: torch.nn.Module) -> TypeGuard[Classifier]:
    """The model computes ``head(features(x))`` (a :class:`~imbsweep.models.Classifier` that keeps
    its forward), so its features can be taken apart from its classifier."""
    return isinstance(model, Classifier) and type(model).forward is Classifier.forward


def check_classifier(cfg: DictConfig, model: torch.nn.Module, stage2: Stage2 | None) -> None:
    """MaxNorm, ``eval.taunorm_tau`` and a second stage need a classifier they act on.

    Raises:
        ConfigError: the setting has no classifier to act on, or no effect on this one.
    """
    head = getattr(model, "head", None)
    weight = None if not isinstance(head, torch.nn.Module) else classifier_weight_name(head)
    normed = f"with loss={family(cfg.loss)}: its normalised classifier ignores the norms of its class weights"
    bound = getattr(model, "max_norm", None)
    if bound is not None:
        if weight is None:
            raise ConfigError("model.max_norm", bound, f"needs a head with per-class weights; "
                                                       f"{type(head).__name__} has none")
        if isinstance(head, NormedLinear):
            raise ConfigError("model.max_norm", bound, f"has no effect {normed}; set model.max_norm=null")
    tau = float((cfg.get("eval") or {}).get("taunorm_tau", 0.0))
    if tau:
        if not decoupled(model) or weight is None:
            raise ConfigError("eval.taunorm_tau", tau, f"{HEAD_NEEDED}; {cfg.model._target_} has none")
        if isinstance(head, NormedLinear):
            raise ConfigError("eval.taunorm_tau", tau, f"has no effect {normed}; set eval.taunorm_tau=0")
    if stage2 is not None:
        if not decoupled(model) or not isinstance(head, torch.nn.Module):
            raise ConfigError("stage2", stage2.name, f"{HEAD_NEEDED}; {cfg.model._target_} has none")
        check_head(head, stage2)


def memory_layout(t: Any, model: torch.nn.Module) -> torch.memory_format:
    """``torch.channels_last`` for ``trainer.channels_last=true`` (the model converted to it),
    else the default layout (``prepare`` checked that the data are images)."""
    if not t.get("channels_last", False):
        return torch.contiguous_format
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # (documented; not in the stubs)
    return torch.channels_last


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    """The model's logits ``[N, C]`` in eval mode, as float64."""
    model.eval()
    out = [model(x[i:i + batch_size]).float() for i in range(0, len(x), batch_size)]
    return torch.cat(out).cpu().double().numpy()


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor | None, np.ndarray]:
    """The model's features (None unless :func:`decoupled`) and logits ``[N, C]`` as float64, in
    eval mode; for a decoupled model ``head(features(x))`` is what ``model(x)`` computes."""
    if not decoupled(model):
        return None, predict_logits(model, x, batch_size)
    model.eval()
    feats = [model.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    logits = [model.head(f).float() for f in feats]
    return torch.cat(feats), torch.cat(logits).cpu().double().numpy()


@dataclass
class _Best:
    """The selected epoch so far: its score (signed to maximize), validation, raw logits,
    features and the weights to restore (the whole model, or stage 2's classifier)."""

    score: float
    epoch: int
    val: Evaluation
    logits: np.ndarray
    features: torch.Tensor | None
    state: dict[str, Any]


def keep_best(best: _Best | None, score: float, epoch: int, val: Evaluation, logits: np.ndarray,
              features: torch.Tensor | None, module: torch.nn.Module) -> tuple[_Best, bool]:
    """The selected epoch: this one (its weights copied from ``module``) when its score beats
    ``best``'s, else ``best``; and whether this one was kept."""
    if best is None or score > best.score:
        return _Best(score, epoch, val, logits, features, copy.deepcopy(module.state_dict())), True
    return best, False


def train_epoch(loss_of: Callable[[torch.Tensor], torch.Tensor], perm: torch.Tensor, n: int, batch_size: int,
                opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler, amp: Amp,
                after_step: Callable[[], None] | None = None) -> float:
    """One epoch's pass over the first ``n`` indices of ``perm`` in batches: the batch's loss
    ``loss_of(idx)`` (inside ``amp``'s autocast), its backward pass, the optimizer step,
    ``after_step`` (MaxNorm), the scheduler's step. Returns the mean training loss."""
    total = torch.zeros((), device=perm.device)
    for s in range(0, n, batch_size):
        idx = perm[s:s + batch_size]
        with amp.autocast():
            loss = loss_of(idx)
        opt.zero_grad(set_to_none=True)
        amp.backward(loss)
        amp.step(opt)
        if after_step is not None:
            after_step()
        sched.step()
        total += loss.detach() * len(idx)
    return float(total) / n


def _diverged(train_loss: float, where: str) -> str | None:
    """Why the run fails when its training loss is not finite (None while it is)."""
    return None if math.isfinite(train_loss) else f"train/loss is {train_loss} at {where} (diverged)"


class _Evaluation:
    """How ``fit`` scores logits: the metrics of a split (after post-hoc logit adjustment or
    tau-normalisation when ``eval`` asks for them), and each epoch's validation, reported."""

    def __init__(self, cfg: DictConfig, ds: Dataset, model: torch.nn.Module, reporter: Reporter) -> None:
        ev = cfg.get("eval") or {}
        self.ds, self.model, self.reporter, self.objective = ds, model, reporter, cfg.objective
        self.tau, self.tn_tau = float(ev.get("posthoc_tau", 0.0)), float(ev.get("taunorm_tau", 0.0))
        self.shots = ShotGroups(**cfg.get("metrics", {}).get("shots", {}))
        self.ece_bins = int(cfg.get("metrics", {}).get("ece_bins", 15))
        self.eval_batch_size = int(cfg.trainer.eval_batch_size)
        counts = ds.train_class_counts
        self.log_prior = np.log(np.maximum(counts, 1e-12) / counts.sum())
        self.sign = 1.0 if cfg.objective.direction == "maximize" else -1.0

    def split(self, feats: torch.Tensor | None, logits: np.ndarray, y: np.ndarray, split: str) -> Evaluation:
        model = self.model
        if self.tn_tau and feats is not None and decoupled(model):  # the metrics of the tau-normalised classifier
            logits = taunorm_logits(model.head, feats, self.tn_tau, self.eval_batch_size).cpu().double().numpy()
        ds = self.ds
        return evaluate(posthoc_probs(logits, self.log_prior, self.tau), y, ds.train_class_counts, ds.class_names,
                        split, self.shots, self.ece_bins)

    def validate(self, epoch: int, metrics: dict[str, float], feats: torch.Tensor | None,
                 logits: np.ndarray) -> tuple[float, Evaluation]:
        """Evaluate on validation, report the epoch; its score, signed to maximize."""
        val = self.split(feats, logits, self.ds.y_val, "val")
        metrics.update(val.metrics)
        metrics = {k: clean(v) for k, v in metrics.items()}  # what is logged is what is selected on
        name = self.objective.metric
        if name not in metrics:
            raise ConfigError("objective.metric", name, "is not a metric this run logs; it logs: "
                              + ", ".join(k for k in metrics if k.startswith("val/")))
        self.reporter.on_epoch_end(epoch, metrics)
        return self.sign * metrics[name], val


@dataclass
class _Stage:
    """What a stage of training ended with: the selected epoch (None if none finished), the
    epochs run, why it failed (None) and the last training loss."""

    best: _Best | None
    epochs: int
    reason: str | None
    train_loss: float


def fit(cfg: DictConfig, reporter: Reporter | None = None, setup: Setup | None = None) -> Result:
    """Train one model as ``cfg`` says and return the selected epoch's metrics.

    Each epoch: one pass over the shuffled training split (batches by tensor indexing,
    mixed when ``augment`` says so), then validation; the epoch with the best
    ``objective.metric`` is kept (early stopping after ``trainer.patience`` epochs without
    improvement). With ``stage2`` the classifier is then re-trained on the selected epoch's
    frozen features (:func:`retrain_classifier`) and the best stage-2 epoch is kept instead.
    Only the kept weights are evaluated on the test split (:func:`_final_result`). A
    non-finite training loss ends the run as ``failed``.

    Args:
        cfg: the composed config (``conf/config.yaml``).
        reporter: told about every epoch; ``Reporter()`` records nothing.
        setup: prebuilt parts (``prepare(cfg)``); built here when omitted.
    """
    reporter = reporter or Reporter()
    setup = setup or prepare(cfg)
    t, obj, ds, model = cfg.trainer, cfg.objective, setup.dataset, setup.model
    scoring = _Evaluation(cfg, ds, model, reporter)
    stage2 = setup.stage2
    x_tr, y_tr = torch.as_tensor(ds.x_train, device=setup.device), torch.as_tensor(ds.y_train, device=setup.device)
    layout = memory_layout(t, model)  # trainer.channels_last: the images and the model, once
    x_tr = x_tr.contiguous(memory_format=layout)
    gen = torch.Generator().manual_seed(int(t.seed))
    reporter.on_fit_start(FitInfo(int(t.epochs) + (stage2.epochs if stage2 else 0), str(obj.metric),
                                  str(obj.direction), setup.device, len(y_tr),
                                  tuple(int(c) for c in ds.train_class_counts), ds))
    t0 = time.perf_counter()
    run = _train(cfg, setup, scoring, x_tr, y_tr, layout, gen)
    stages: dict[str, float] = {}
    if run.reason is None and run.best is not None:
        model.load_state_dict(run.best.state)
        if stage2 is not None:
            first = run.best
            assert setup.make_optimizer is not None and first.features is not None and decoupled(model)
            best, reason, ran = retrain_classifier(model, stage2, setup.make_optimizer, x_tr, y_tr, int(t.batch_size),
                                                   int(t.eval_batch_size), gen, first.features, run.epochs,
                                                   scoring.validate)
            stages = {"stage1/best_epoch": float(first.epoch), "stage1/epochs_run": float(run.epochs),
                      f"stage1/{obj.metric}": scoring.sign * first.score, "stage2/epochs_run": float(ran)}
            run = _Stage(best, run.epochs + ran, reason, run.train_loss)
    elapsed = time.perf_counter() - t0
    if run.reason is not None or run.best is None:
        result = Result("failed", {"train/loss": run.train_loss, "epochs_run": float(run.epochs)}, None, 0, run.epochs,
                        reason=run.reason or "no epoch finished", class_names=ds.class_names,
                        train_class_counts=ds.train_class_counts, shots=scoring.shots)
    else:
        x_te = torch.as_tensor(ds.x_test, device=setup.device).contiguous(memory_format=layout)
        result = _final_result(cfg, scoring, run.best, x_te, stages, run.epochs, elapsed)
    reporter.on_fit_end(result)
    return result


def _train(cfg: DictConfig, setup: Setup, scoring: _Evaluation, x_tr: torch.Tensor, y_tr: torch.Tensor,
           layout: torch.memory_format, gen: torch.Generator) -> _Stage:
    """Stage 1: the epochs (:func:`train_epoch`, then validation), the selected epoch kept
    (:func:`keep_best`), early stopping after ``trainer.patience`` epochs without a better one."""
    t, ds, model, dev = cfg.trainer, setup.dataset, setup.model, setup.device
    x_va = torch.as_tensor(ds.x_val, device=dev).contiguous(memory_format=layout)
    n, bs, ebs = len(y_tr), int(t.batch_size), int(t.eval_batch_size)
    crop_flip = image_augment(cfg.data, ds, int(t.seed))  # image data: random crop + flip per batch
    amp = Amp(dev, t.get("amp", "auto"))  # mixed precision on CUDA; nothing on the CPU
    mixer, loss_fn = setup.augment, setup.loss

    def max_norm() -> None:
        model.apply_max_norm()  # type: ignore[operator]

    after_step = max_norm if getattr(model, "max_norm", None) is not None else None

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        xb = (x_tr[idx] if crop_flip is None else crop_flip(x_tr[idx])).contiguous(memory_format=layout)
        return loss_fn(model(xb), y_tr[idx]) if mixer is None else mixer.loss(model, loss_fn, xb, y_tr[idx])

    best: _Best | None = None
    since_best, epoch, train_loss = 0, 0, math.nan
    for epoch in range(1, int(t.epochs) + 1):
        loss_fn.set_epoch(epoch)
        model.train()
        perm = setup.resampler.indices(epoch, gen).to(dev)
        train_loss = train_epoch(loss_of, perm, n, bs, setup.optimizer, setup.scheduler, amp, after_step)
        metrics = {"train/loss": train_loss, "train/lr": float(setup.optimizer.param_groups[0]["lr"])}
        reason = _diverged(train_loss, f"epoch {epoch}")
        if reason is not None:
            scoring.reporter.on_epoch_end(epoch, metrics)
            return _Stage(best, epoch, reason, train_loss)
        val_feats, val_logits = predict(model, x_va, ebs)
        score, val = scoring.validate(epoch, metrics, val_feats, val_logits)
        best, kept = keep_best(best, score, epoch, val, val_logits, val_feats, model)
        since_best = 0 if kept else since_best + 1
        if not kept and t.patience is not None and since_best >= t.patience:
            log.info("early stop at epoch %d: no improvement for %d epochs", epoch, since_best)
            break
    return _Stage(best, epoch, None, train_loss)


def _final_result(cfg: DictConfig, scoring: _Evaluation, best: _Best, x_te: torch.Tensor, stages: dict[str, float],
                  epochs_run: int, elapsed: float) -> Result:
    """The final metrics: the selected epoch's validation, the test split scored with its
    weights (already in the model), the post-hoc and tau-normalisation scans, the stages'
    figures, the epochs run and the time ``fit`` took."""
    ds, model, ebs, metric = scoring.ds, scoring.model, scoring.eval_batch_size, str(cfg.objective.metric)
    ev = cfg.get("eval") or {}
    test_feats, test_logits = predict(model, x_te, ebs)
    test = scoring.split(test_feats, test_logits, ds.y_test, "test")
    grid = [float(g) for g in ev.get("posthoc_grid", [0.0])]
    scan = posthoc_scan(best.logits, ds.y_val, test_logits, ds.y_test, scoring.log_prior, grid, metric)
    tn_scan: PosthocScan | None = None
    tn_metrics: dict[str, float] = {}
    if best.features is not None and test_feats is not None and decoupled(model):
        tn_grid = [float(g) for g in ev.get("taunorm_grid", [0.0])]
        tn_scan, tn_metrics = taunorm_scan(model.head, best.features, ds.y_val, test_feats, ds.y_test, tn_grid,
                                           metric, ebs)
    final = {**best.val.metrics, **test.metrics,
             **scan_metrics(scan, best.logits, test_logits, ds, scoring.log_prior), **tn_metrics, **stages,
             "best_epoch": float(best.epoch), "epochs_run": float(epochs_run), "fit_time_s": elapsed}
    final = {k: clean(v) for k, v in final.items()}
    return Result("complete", final, scoring.sign * best.score, best.epoch, epochs_run, val=best.val,
                  test=test, class_names=ds.class_names, train_class_counts=ds.train_class_counts,
                  shots=scoring.shots, posthoc=scan, taunorm=tn_scan)


def retrain_classifier(model: Classifier, stage2: Stage2, make_optimizer: Callable[..., torch.optim.Optimizer],
                       x_tr: torch.Tensor, y_tr: torch.Tensor, batch_size: int, eval_batch_size: int,
                       gen: torch.Generator, val_features: torch.Tensor, after_epoch: int,
                       validate: Callable[[int, dict[str, float], torch.Tensor, np.ndarray], tuple[float, Evaluation]],
                       ) -> tuple[_Best | None, str | None, int]:
    """Stage 2 (Kang et al. 2020): re-train ``model.head`` on the frozen features of ``model``.

    The training features are computed once in eval mode; each stage-2 epoch draws
    ``stage2.sampling`` indices and trains the head with plain cross-entropy through the
    same epoch step as stage 1 (:func:`train_epoch`; MaxNorm after each step when the model
    has it), then ``validate`` reports it as epoch ``after_epoch + k``. The best epoch's head
    is left in ``model``.

    Returns:
        The best stage-2 epoch (None if none finished), the failure reason (None), and the
        stage-2 epochs run.
    """
    with torch.no_grad():
        model.eval()
        feats = torch.cat([model.features(x_tr[i:i + eval_batch_size])
                           for i in range(0, len(x_tr), eval_batch_size)])
    head, params = stage2.new_head(model.head)
    model.head = head
    opt = make_optimizer(params=params, lr=stage2.lr)
    steps = math.ceil(len(y_tr) / batch_size)
    sched = cosine_schedule(opt, total_steps=steps * stage2.epochs, steps_per_epoch=steps)
    sampler = build_resampler(stage2.sampling, y_tr, stage2.epochs)
    after_step = model.apply_max_norm if model.max_norm is not None else None
    plain = Amp(str(feats.device), False)  # stage 2 in float32, as it always ran

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(head(feats[idx]), y_tr[idx])

    best: _Best | None = None
    for k in range(1, stage2.epochs + 1):
        head.train()
        perm = sampler.indices(k, gen).to(feats.device)
        train_loss = train_epoch(loss_of, perm, len(perm), batch_size, opt, sched, plain, after_step)
        metrics = {"train/loss": train_loss, "train/lr": float(opt.param_groups[0]["lr"])}
        reason = _diverged(train_loss, f"stage-2 epoch {k}")
        if reason is not None:
            return best, reason, k
        with torch.no_grad():
            head.eval()
            logits = torch.cat([head(val_features[i:i + eval_batch_size]).float()
                                for i in range(0, len(val_features), eval_batch_size)]).cpu().double().numpy()
        score, val = validate(after_epoch + k, metrics, val_features, logits)
        best, _ = keep_best(best, score, after_epoch + k, val, logits, val_features, head)
    assert best is not None
    head.load_state_dict(best.state)
    return best, None, stage2.epochs
