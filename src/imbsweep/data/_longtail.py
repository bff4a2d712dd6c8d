"""Long-tailed training splits, built the standard way.

Balanced validation and test splits are held out *before* the training pool is subsampled,
so that every class is measured on the same number of examples.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import ConfigError

log = logging.getLogger(__name__)
PROFILES = ("exp", "step")


def longtail_counts(n_max: int, n_classes: int, imbalance_ratio: float, profile: str = "exp", *,
                    warn: bool = True) -> np.ndarray:
    """Training count per class, head (class 0) to tail.

    ``exp``: ``n_i = floor(n_max * ratio ** (-i / (C - 1)))`` (Cui et al. 2019, Cao et al. 2019).
    ``step``: the first half of the classes keep ``n_max``, the rest ``floor(n_max / ratio)``
    (Buda et al. 2018).

    Args:
        n_max: examples of the head class.
        n_classes: number of classes C.
        imbalance_ratio: ``n_max / n_min`` (>= 1).
        profile: ``exp`` or ``step``.
        warn: a ratio above ``n_max`` gets a warning: the rarest class would keep less than one
            example and keeps one, so the ratio is ``n_max``, not the one asked for.

    Returns:
        int64 array of length C, never below 1.

    Example:
        >>> longtail_counts(1000, 3, 100).tolist()
        [1000, 100, 10]
    """
    if imbalance_ratio < 1:
        raise ConfigError("data.imbalance_ratio", imbalance_ratio, "must be >= 1 (1 = balanced)")
    if profile not in PROFILES:
        raise ConfigError("data.profile", profile, f"must be one of {', '.join(PROFILES)}")
    if warn and imbalance_ratio > n_max:
        log.warning("data.imbalance_ratio=%s is more than the %d training examples of the most frequent class: "
                    "the rarest keeps 1, so the ratio is %d", f"{imbalance_ratio:g}", n_max, n_max)
    i = np.arange(n_classes, dtype=np.float64)
    if profile == "exp":
        # the tiny epsilon keeps exact powers (1000 * 100**-1 = 10) from flooring to 9
        frac = imbalance_ratio ** (-i / max(n_classes - 1, 1))
        counts = np.floor(n_max * frac + 1e-9)
    else:
        counts = np.where(i < n_classes // 2, n_max, np.floor(n_max / imbalance_ratio + 1e-9))
    return np.maximum(counts, 1).astype(np.int64)


def balanced_holdout(y: np.ndarray, n_val: int, n_test: int, rng: np.random.Generator,
                     ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Hold out ``n_val`` and ``n_test`` examples of every class.

    Returns:
        (val indices, test indices, per-class shuffled indices of the remaining pool).
    """
    val, test, pool = [], [], []
    for c in range(int(y.max()) + 1):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) < n_val + n_test + 1:
            raise ConfigError("data.n_val_per_class", n_val,
                              f"class {c} has {len(idx)} examples; n_val_per_class + "
                              f"n_test_per_class must leave at least 1 for training")
        val.append(idx[:n_val])
        test.append(idx[n_val:n_val + n_test])
        pool.append(idx[n_val + n_test:])
    return np.concatenate(val), np.concatenate(test), pool


def subsample_pool(pool: list[np.ndarray], counts: np.ndarray, key: str = "data.n_train_max",
                   ) -> np.ndarray:
    """Take the first ``counts[c]`` of each class's shuffled pool."""
    out = []
    for c, (idx, n) in enumerate(zip(pool, counts, strict=True)):
        if len(idx) < n:
            raise ConfigError(key, int(counts[0]),
                              f"class {c} has only {len(idx)} training examples left, "
                              f"{int(n)} asked for")
        out.append(idx[:n])
    return np.concatenate(out)


def stratified_split(y: np.ndarray, val_fraction: float, test_fraction: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class split that keeps the natural class distribution in all three parts.

    Every class keeps at least one training example; a class with 3 or more examples also
    gets at least one validation and one test example.
    """
    train, val, test = [], [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = len(idx)
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        if n >= 3:
            n_test, n_val = max(n_test, 1), max(n_val, 1)
        n_val = min(n_val, n - 1)
        n_test = min(n_test, n - 1 - n_val)
        val.append(idx[:n_val])
        test.append(idx[n_val:n_val + n_test])
        train.append(idx[n_val + n_test:])
    return np.concatenate(train), np.concatenate(val), np.concatenate(test)


def longtail_subsample(train: np.ndarray, y: np.ndarray, imbalance_ratio: float, profile: str,
                       rng: np.random.Generator, head_first: bool = True) -> np.ndarray:
    """Subsample the training indices ``train`` to a long-tailed profile.

    Args:
        train: indices into ``y`` of the training split.
        y: all labels.
        imbalance_ratio: ``n_max / n_min`` of the result.
        profile: ``exp`` or ``step``.
        rng: the generator that picks the kept examples.
        head_first: rank classes by their training count (the most frequent is the head);
            False ranks them by index (class 0 is the head, as in CIFAR-LT).

    Returns:
        The kept indices, shuffled. A class keeps ``min(target, what it has)`` examples, where
        the head's target is its own count.
    """
    counts = np.bincount(y[train], minlength=int(y.max()) + 1)
    order = np.argsort(-counts, kind="stable") if head_first else np.arange(len(counts))
    target = longtail_counts(int(counts[order[0]]), len(counts), float(imbalance_ratio), profile)
    keep = []
    for rank, c in enumerate(order):
        idx = rng.permutation(train[y[train] == c])
        keep.append(idx[:min(int(target[rank]), len(idx))])
    return rng.permutation(np.concatenate(keep))
