"""The task: ``fit(cfg, reporter) -> Result``. It knows nothing about Optuna or MLflow."""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from omegaconf import DictConfig

from . import _config
from ._amp import Amp
from .data import DEFAULT_CACHE_MB, Dataset, image_augment, load_dataset
from .errors import ConfigError
from .losses import ImbalanceLoss, build_loss
from .metrics import HEADLINE, Evaluation, ShotGroups, clean, evaluate, headline
from .models import build_model
from .reporting import FitInfo, Reporter
from .resampling import Resampler, build_resampler
from .schedulers import RUNTIME_ARGS

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


@dataclass
class Result:
    """What a run produced.

    Attributes:
        state: ``complete`` or ``failed``.
        metrics: the selected (best) epoch's ``val/*`` metrics and the ``test/*`` metrics of
            the same weights, plus ``best_epoch``, ``epochs_run`` and ``fit_time_s``.
        objective: the value of ``objective.metric`` at the best epoch (None if failed).
        reason: why a failed run failed.
    """

    state: Literal["complete", "failed"]
    metrics: dict[str, float]
    objective: float | None
    best_epoch: int
    epochs_run: int
    reason: str | None = None
    class_names: tuple[str, ...] = ()
    train_class_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    val: Evaluation | None = None
    test: Evaluation | None = None
    shots: ShotGroups = field(default_factory=ShotGroups)
    posthoc: PosthocScan | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cache_dir(cfg: DictConfig) -> Path:
    return Path(cfg.get("state_dir") or "mlruns").expanduser().resolve() / "datasets"


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
    torch.use_deterministic_algorithms(bool(t.deterministic), warn_only=True)
    ds = dataset if dataset is not None else load_dataset(cfg.data, cache_dir(cfg),
                                                          cfg.get("dataset_cache_mb", DEFAULT_CACHE_MB))
    seed_everything(t.seed)  # after data: model init depends on the seed only
    model = build_model(cfg.model, ds).to(device)  # a model that cannot take this data is an error
    loss = build_loss(cfg.loss, ds.train_class_counts, int(t.epochs))
    if loss.reweight_from_epoch is not None and loss.reweight_from_epoch > t.epochs:
        raise ConfigError("loss.reweight_from_epoch", loss.reweight_from_epoch,
                          f"must be <= trainer.epochs ({t.epochs}), or the weights never switch on")
    head = getattr(model, "head", None)
    in_features = getattr(head, "in_features", None)
    if in_features is None:
        probe = loss.make_head(1, ds.n_classes)
        if probe is not None:
            raise ConfigError("loss.name", cfg.loss.name,
                              f"needs a model whose `head` is a linear layer; {cfg.model._target_} has none")
    else:
        new_head = loss.make_head(int(in_features), ds.n_classes)
        if new_head is not None:
            model.head = new_head
    model, loss = model.to(device), loss.to(device)
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
    return Setup(ds, model, loss, optimizer, scheduler, device, steps, resampler)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    """The model's logits ``[N, C]`` in eval mode, as float64."""
    model.eval()
    out = [model(x[i:i + batch_size]).float() for i in range(0, len(x), batch_size)]
    return torch.cat(out).cpu().double().numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def posthoc_probs(logits: np.ndarray, log_prior: np.ndarray, tau: float) -> np.ndarray:
    """Class probabilities after post-hoc logit adjustment: ``softmax(z - tau * log(prior))``
    (Menon et al. 2021, eq. 8); ``tau = 0`` is the plain softmax."""
    return softmax(logits - tau * log_prior if tau else logits)


#: metrics reported after the post-hoc tau scan, as ``val/<name>_posthoc`` and ``test/<name>_posthoc``
POSTHOC_METRICS = HEADLINE


@dataclass(frozen=True)
class PosthocScan:
    """Post-hoc adjustment over a tau grid on the selected weights: ``metric`` (the
    objective's name when it is one of :data:`POSTHOC_METRICS`, else balanced accuracy)
    on validation and test per tau; ``tau`` is the one picked on validation."""

    metric: str
    taus: tuple[float, ...]
    val: tuple[float, ...]
    test: tuple[float, ...]
    tau: float


def fit(cfg: DictConfig, reporter: Reporter | None = None, setup: Setup | None = None) -> Result:
    """Train one model as ``cfg`` says and return the selected epoch's metrics.

    Each epoch: one pass over the shuffled training split (batches by tensor indexing),
    then validation; the epoch with the best ``objective.metric`` is kept (early stopping
    after ``trainer.patience`` epochs without improvement), and only its weights are
    evaluated on the test split. A non-finite training loss ends the run as ``failed``.

    Args:
        cfg: the composed config (``conf/config.yaml``).
        reporter: told about every epoch; ``Reporter()`` records nothing.
        setup: prebuilt parts (``prepare(cfg)``); built here when omitted.
    """
    reporter = reporter or Reporter()
    setup = setup or prepare(cfg)
    t, obj = cfg.trainer, cfg.objective
    ds, model, loss_fn, opt, sched, dev = (setup.dataset, setup.model, setup.loss,
                                           setup.optimizer, setup.scheduler, setup.device)
    shots = ShotGroups(**cfg.get("metrics", {}).get("shots", {}))
    ece_bins = int(cfg.get("metrics", {}).get("ece_bins", 15))
    ev = cfg.get("eval") or {}
    tau = float(ev.get("posthoc_tau", 0.0))
    counts = ds.train_class_counts
    log_prior = np.log(np.maximum(counts, 1e-12) / counts.sum())
    x_tr, y_tr = torch.as_tensor(ds.x_train, device=dev), torch.as_tensor(ds.y_train, device=dev)
    x_va, x_te = torch.as_tensor(ds.x_val, device=dev), torch.as_tensor(ds.x_test, device=dev)
    n, bs = len(y_tr), int(t.batch_size)
    gen = torch.Generator().manual_seed(int(t.seed))
    sign = 1.0 if obj.direction == "maximize" else -1.0
    crop_flip = image_augment(cfg.data, ds, int(t.seed))  # image data: random crop + flip per batch
    amp = Amp(dev, t.get("amp", "auto"))  # mixed precision on CUDA; nothing on the CPU

    def run_eval(logits: np.ndarray, y: np.ndarray, split: str) -> Evaluation:
        return evaluate(posthoc_probs(logits, log_prior, tau), y, counts, ds.class_names, split,
                        shots, ece_bins)

    reporter.on_fit_start(FitInfo(int(t.epochs), str(obj.metric), str(obj.direction), dev, n,
                                  tuple(int(c) for c in counts), ds))
    t0 = time.perf_counter()
    best: tuple[float, int, Evaluation, np.ndarray, dict[str, Any]] | None = None
    since_best, epoch, reason = 0, 0, None
    for epoch in range(1, int(t.epochs) + 1):
        loss_fn.set_epoch(epoch)
        model.train()
        perm = setup.resampler.indices(epoch, gen).to(dev)
        total = torch.zeros((), device=dev)
        for s in range(0, n, bs):
            idx = perm[s:s + bs]
            xb = x_tr[idx] if crop_flip is None else crop_flip(x_tr[idx])
            with amp.autocast():
                loss = loss_fn(model(xb), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            amp.backward(loss)
            amp.step(opt)
            sched.step()
            total += loss.detach() * len(idx)
        train_loss = float(total) / n
        metrics: dict[str, float] = {"train/loss": train_loss,
                                     "train/lr": float(opt.param_groups[0]["lr"])}
        if not math.isfinite(train_loss):
            reason = f"train/loss is {train_loss} at epoch {epoch} (diverged)"
            reporter.on_epoch_end(epoch, metrics)
            break
        val_logits = predict_logits(model, x_va, t.eval_batch_size)
        val = run_eval(val_logits, ds.y_val, "val")
        metrics.update(val.metrics)
        metrics = {k: clean(v) for k, v in metrics.items()}  # what is logged is what is selected on
        if obj.metric not in metrics:
            raise ConfigError("objective.metric", obj.metric,
                              "is not a metric this run logs; it logs: "
                              + ", ".join(k for k in metrics if k.startswith("val/")))
        reporter.on_epoch_end(epoch, metrics)
        score = sign * metrics[obj.metric]
        if best is None or score > best[0]:
            best = (score, epoch, val, val_logits, copy.deepcopy(model.state_dict()))
            since_best = 0
        else:
            since_best += 1
            if t.patience is not None and since_best >= t.patience:
                log.info("early stop at epoch %d: no improvement for %d epochs", epoch, since_best)
                break
    elapsed = time.perf_counter() - t0

    if reason is not None or best is None:
        result = Result("failed", {"train/loss": train_loss, "epochs_run": float(epoch)}, None, 0, epoch,
                        reason=reason or "no epoch finished", class_names=ds.class_names,
                        train_class_counts=counts, shots=shots)
    else:
        score, best_epoch, val, val_logits, state = best
        model.load_state_dict(state)
        test_logits = predict_logits(model, x_te, t.eval_batch_size)
        test = run_eval(test_logits, ds.y_test, "test")
        scan = posthoc_scan(val_logits, ds.y_val, test_logits, ds.y_test, log_prior,
                            [float(g) for g in ev.get("posthoc_grid", [0.0])], str(obj.metric))
        final = {**val.metrics, **test.metrics, **scan_metrics(scan, val_logits, test_logits, ds,
                                                               log_prior),
                 "best_epoch": float(best_epoch), "epochs_run": float(epoch), "fit_time_s": elapsed}
        final = {k: clean(v) for k, v in final.items()}
        result = Result("complete", final, sign * score, best_epoch, epoch, val=val, test=test,
                        class_names=ds.class_names, train_class_counts=counts, shots=shots,
                        posthoc=scan)
    reporter.on_fit_end(result)
    return result


def _summary(logits: np.ndarray, log_prior: np.ndarray, tau: float, y: np.ndarray) -> dict[str, float]:
    """The headline metrics of the predictions after post-hoc adjustment by ``tau``: the
    argmax of the adjusted logits (that of their softmax, without computing it)."""
    return headline(y, (logits - tau * log_prior if tau else logits).argmax(axis=1), logits.shape[1])


def posthoc_scan(val_logits: np.ndarray, y_val: np.ndarray, test_logits: np.ndarray,
                 y_test: np.ndarray, log_prior: np.ndarray, grid: list[float],
                 objective: str) -> PosthocScan:
    """Scan ``grid`` for the post-hoc tau; pick it on validation (first best on ties, so
    the smallest adjustment among equals)."""
    name = objective.removeprefix("val/")
    metric = name if name in POSTHOC_METRICS else "balanced_acc"
    taus = tuple(sorted(set(grid)))
    val = tuple(_summary(val_logits, log_prior, g, y_val)[metric] for g in taus)
    test = tuple(_summary(test_logits, log_prior, g, y_test)[metric] for g in taus)
    return PosthocScan(metric, taus, val, test, taus[int(np.argmax(val))])


def scan_metrics(scan: PosthocScan, val_logits: np.ndarray, test_logits: np.ndarray, ds: Dataset,
                 log_prior: np.ndarray) -> dict[str, float]:
    """``posthoc/tau`` and the summary metrics at it, ``val/*_posthoc`` and ``test/*_posthoc``."""
    out = {"posthoc/tau": scan.tau}
    for split, logits, y in (("val", val_logits, ds.y_val), ("test", test_logits, ds.y_test)):
        for k, v in _summary(logits, log_prior, scan.tau, y).items():
            out[f"{split}/{k}_posthoc"] = v
    return out
