"""A plain Hydra app of the user's own: a small PyTorch MLP on scikit-learn's digits, made
long-tailed, trained in its own loop with one of imbsweep's losses.

    python train.py                                  # one run
    python train.py loss=focal optimizer.lr=0.01     # another
    python train.py -m +sweep=tournament             # the fair tournament, with imbsweep's sweeper
    imbsweep compare digits_tournament --reseed 3    # each arm's best on 3 paired seeds
    imbsweep export digits_tournament                # the best trial as conf/best/digits_tournament.yaml

Nothing here is imbsweep's but the loss (``imbsweep.losses.build_loss``) and one line per epoch
(``imbsweep.report``) that lets the sweep prune a hopeless trial and draw its curve; the value the
function returns (validation balanced accuracy) is what the sweep optimizes.
"""

from __future__ import annotations

import hydra
import mlflow
import numpy as np
import torch
from omegaconf import DictConfig
from sklearn.datasets import load_digits
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split
from torch import nn

import imbsweep
from imbsweep.losses import build_loss


def long_tailed_digits(ratio: float, split_seed: int) -> tuple[np.ndarray, ...]:
    """Digits with an exponential long tail in training (class 0 keeps all, class 9 1/ratio
    of its examples); validation and test stay balanced."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.3, stratify=y, random_state=split_seed)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.3, stratify=y_rest,
                                                      random_state=split_seed)
    rng = np.random.default_rng(split_seed)
    keep = []
    for c in range(10):
        idx = np.flatnonzero(y_train == c)
        n = max(2, int(len(idx) * ratio ** (-c / 9)))
        keep.extend(rng.choice(idx, size=n, replace=False))
    keep = np.sort(np.array(keep))
    return x_train[keep], y_train[keep], x_val, y_val, x_test, y_test


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def train(cfg: DictConfig) -> float:
    torch.manual_seed(cfg.seed)
    x_tr, y_tr, x_val, y_val, x_te, y_te = long_tailed_digits(cfg.data.imbalance_ratio, cfg.data.split_seed)
    model = nn.Sequential(nn.Linear(64, cfg.model.hidden), nn.ReLU(), nn.Linear(cfg.model.hidden, 10))
    loss_fn = build_loss(cfg.loss, np.bincount(y_tr, minlength=10), epochs=cfg.epochs)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    gen = torch.Generator().manual_seed(cfg.seed)

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).argmax(1).numpy()

    best_val, test_at_best = -1.0, 0.0
    for epoch in range(1, cfg.epochs + 1):
        loss_fn.set_epoch(epoch)  # deferred re-weighting reads it
        model.train()
        for idx in torch.randperm(len(yt), generator=gen).split(cfg.batch_size):
            opt.zero_grad()
            loss_fn(model(xt[idx]), yt[idx]).backward()
            opt.step()
        model.eval()
        val = balanced_accuracy_score(y_val, predict(x_val))
        if val > best_val:  # the epoch the run keeps: picked on validation, never on test
            best_val, test_at_best = val, balanced_accuracy_score(y_te, predict(x_te))
        imbsweep.report(epoch, val)  # a curve in the trial's MLflow run; may prune the trial
    if mlflow.active_run() is not None:  # inside a sweep's trial: its MLflow run is the active one
        mlflow.log_metric("test/balanced_acc", test_at_best)
    print(f"val/balanced_acc={best_val:.4f} test/balanced_acc={test_at_best:.4f}")
    return float(best_val)


if __name__ == "__main__":
    train()
