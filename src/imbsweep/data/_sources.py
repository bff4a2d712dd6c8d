"""Dataset sources. Each is a small dataclass whose fields are its config keys
(``conf/data/*.yaml`` holds ``_target_`` plus these fields) and whose ``build()`` makes
the :class:`Dataset`."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, DataError
from ._dataset import Dataset
from ._longtail import (
    PROFILES,
    balanced_holdout,
    longtail_counts,
    stratified_split,
    subsample_pool,
)

log = logging.getLogger(__name__)
SCALINGS = ("standard", "global", "none")


def _check(key: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"data.{key}", value, allowed)


def scale(x_train: np.ndarray, others: Sequence[np.ndarray], scaling: str,
          ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Fit feature scaling on the training split only and apply it to the others.

    ``standard``: per-feature mean/std (scikit-learn's StandardScaler); ``global``: one mean and
    std over all training values (keeps the shape of a sequence); ``none``.
    """
    if scaling == "none":
        return x_train, list(others)
    if scaling == "global":
        mu, sd = float(x_train.mean()), float(x_train.std()) or 1.0
        return (x_train - mu) / sd, [(o - mu) / sd for o in others]
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(x_train)
    return sc.transform(x_train), [sc.transform(o) for o in others]


@dataclass
class LongTailSource:
    """A balanced source turned long-tailed: balanced val/test held out, then the training
    pool subsampled to ``longtail_counts(n_train_max, C, imbalance_ratio, profile)``."""

    imbalance_ratio: float = 100.0
    profile: str = "exp"
    n_train_max: int = 1000
    n_val_per_class: int = 200
    n_test_per_class: int = 500
    scaling: str = "standard"
    seed: int = 0
    name: ClassVar[str] = "longtail"

    def __post_init__(self) -> None:
        r = self.imbalance_ratio
        _check("imbalance_ratio", r, isinstance(r, int | float) and r >= 1,
               "must be a number >= 1 (1 = balanced)")
        _check("profile", self.profile, self.profile in PROFILES,
               f"must be one of {', '.join(PROFILES)}")
        for key in ("n_train_max", "n_val_per_class", "n_test_per_class"):
            v = getattr(self, key)
            _check(key, v, isinstance(v, int) and v >= 1, "must be an integer >= 1")
        _check("scaling", self.scaling, self.scaling in SCALINGS,
               f"must be one of {', '.join(SCALINGS)}")

    def raw(self) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        """All examples (features float, labels 0..C-1) and the class names."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """What identifies the built dataset (the cache key is its hash)."""
        return {"name": self.name, **dataclasses.asdict(self)}

    def build(self) -> Dataset:
        x, y, names = self.raw()
        rng = np.random.default_rng(self.seed)
        val, test, pool = balanced_holdout(y, self.n_val_per_class, self.n_test_per_class, rng)
        counts = longtail_counts(self.n_train_max, len(names), self.imbalance_ratio, self.profile)
        train = rng.permutation(subsample_pool(pool, counts))
        x = x.reshape(len(x), -1).astype(np.float64)
        xtr, (xva, xte) = scale(x[train], [x[val], x[test]], self.scaling)
        return Dataset(self.name, xtr.astype(np.float32), y[train].astype(np.int64),
                       xva.astype(np.float32), y[val].astype(np.int64),
                       xte.astype(np.float32), y[test].astype(np.int64), names)


@dataclass
class MNIST1DLT(LongTailSource):
    """MNIST-1D (Greydanus 2020), generated offline with ``mnist1d.data.make_dataset``.

    ``make_dataset`` yields exactly ``num_samples // 10`` examples per class, so it is asked
    for ``10 * (n_train_max + n_val_per_class + n_test_per_class)``.
    """

    scaling: str = "global"
    name: ClassVar[str] = "mnist1d_lt"

    def raw(self) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        from mnist1d.data import get_dataset_args, make_dataset

        per_class = self.n_train_max + self.n_val_per_class + self.n_test_per_class
        args = get_dataset_args()
        args.num_samples, args.seed = 10 * per_class, self.seed
        log.info("generating MNIST-1D offline: %d examples (once; then cached)", args.num_samples)
        state = np.random.get_state()  # make_dataset seeds numpy's global generator
        try:
            d = make_dataset(args)
        finally:
            np.random.set_state(state)
        x = np.concatenate([d["x"], d["x_test"]])
        y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
        return x, y, tuple(str(i) for i in range(10))


@dataclass
class DigitsLT(LongTailSource):
    """scikit-learn's bundled 8x8 digits (1797 images, at least 174 per class)."""

    imbalance_ratio: float = 10.0
    n_train_max: int = 100
    n_val_per_class: int = 20
    n_test_per_class: int = 50
    name: ClassVar[str] = "digits_lt"

    def raw(self) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.data, d.target.astype(np.int64), tuple(str(i) for i in range(10))


@dataclass
class Synthetic(LongTailSource):
    """scikit-learn's ``make_classification``, generated with class weights proportional to
    each class's training count plus its balanced val/test share."""

    n_classes: int = 10
    n_features: int = 20
    n_informative: int = 10
    n_clusters_per_class: int = 1
    class_sep: float = 1.0
    flip_y: float = 0.0
    name: ClassVar[str] = "synthetic"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check("n_classes", self.n_classes, isinstance(self.n_classes, int) and self.n_classes >= 2,
               "must be an integer >= 2")
        cap = 2 ** self.n_informative
        _check("n_informative", self.n_informative,
               self.n_classes * self.n_clusters_per_class <= cap <= 2 ** self.n_features,
               f"needs n_classes * n_clusters_per_class <= 2**n_informative and "
               f"n_informative <= n_features ({self.n_features})")

    def raw(self) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        from sklearn.datasets import make_classification

        counts = longtail_counts(self.n_train_max, self.n_classes, self.imbalance_ratio,
                                 self.profile)
        need = counts + self.n_val_per_class + self.n_test_per_class
        # make_classification floors per-cluster sizes: ask for 5% + 5 per class more
        want = np.ceil(need * 1.05 + 5)
        x, y = make_classification(
            n_samples=int(want.sum()), n_features=self.n_features,
            n_informative=self.n_informative, n_redundant=0, n_classes=self.n_classes,
            n_clusters_per_class=self.n_clusters_per_class, weights=list(want / want.sum()),
            flip_y=self.flip_y, class_sep=self.class_sep, random_state=self.seed)
        return x, y.astype(np.int64), tuple(str(i) for i in range(self.n_classes))


@dataclass
class Tabular:
    """A user's CSV or Parquet file.

    Stratified train/val/test splits keep the file's class distribution; numeric columns are
    median-imputed and standardised, categorical ones one-hot encoded, both fit on the
    training split only. ``imbalance_ratio`` (optional) further subsamples the training split
    to a long-tailed profile, head = the most frequent class.
    """

    path: str = "???"
    target: str = "???"
    features: list[str] | None = None
    categorical: list[str] | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    imbalance_ratio: float | None = None
    profile: str = "exp"
    seed: int = 0
    name: ClassVar[str] = "tabular"

    def __post_init__(self) -> None:
        for key in ("val_fraction", "test_fraction"):
            v = getattr(self, key)
            _check(key, v, isinstance(v, int | float) and 0 < v < 1, "must be in (0, 1)")
        _check("test_fraction", self.test_fraction, self.val_fraction + self.test_fraction < 1,
               "val_fraction + test_fraction must be < 1")
        r = self.imbalance_ratio
        _check("imbalance_ratio", r, r is None or (isinstance(r, int | float) and r >= 1),
               "must be null (keep the file's distribution) or a number >= 1")
        self._file = Path(self.path).expanduser()
        if not self._file.is_file():
            raise DataError("data.path", self.path, f"no such file (looked in {Path.cwd()})")
        if self._file.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise DataError("data.path", self.path, "must be a .csv, .parquet or .pq file")

    def spec(self) -> dict[str, Any]:
        st = os.stat(self._file)
        return {"name": self.name, **dataclasses.asdict(self), "file": str(self._file.resolve()),
                "mtime_ns": st.st_mtime_ns, "size": st.st_size}

    def _read(self) -> Any:
        import pandas as pd

        if self._file.suffix.lower() == ".csv":
            return pd.read_csv(self._file)
        return pd.read_parquet(self._file)

    def build(self) -> Dataset:
        df = self._read()
        cols = list(df.columns)
        if self.target not in df.columns:
            raise DataError("data.target", self.target,
                            f"no such column in {self.path}; columns are: {', '.join(map(str, cols))}")
        features = self.features or [c for c in cols if c != self.target]
        unknown = [c for c in [*features, *(self.categorical or [])] if c not in df.columns]
        if unknown:
            raise DataError("data.features", unknown,
                            f"no such column(s) in {self.path}; columns are: {', '.join(map(str, cols))}")
        df = df[df[self.target].notna()]
        labels, y = np.unique(df[self.target].astype(str).to_numpy(), return_inverse=True)
        n = np.bincount(y)
        if len(labels) < 2:
            raise DataError("data.target", self.target, "needs at least 2 classes")
        if n.min() < 2:
            c = labels[int(n.argmin())]
            raise DataError("data.target", self.target,
                            f"class {c!r} has {int(n.min())} example; every class needs at least 2")
        rng = np.random.default_rng(self.seed)
        train, val, test = stratified_split(y, self.val_fraction, self.test_fraction, rng)
        if self.imbalance_ratio is not None:
            train = self._longtail(train, y, rng)
        x = df[features]
        cat = self.categorical if self.categorical is not None else [
            c for c in features if x[c].dtype.kind not in "biuf"]
        xtr, xva, xte = self._encode(x, features, cat, train, val, test)
        return Dataset(self.name, xtr, y[train].astype(np.int64), xva, y[val].astype(np.int64),
                       xte, y[test].astype(np.int64), tuple(str(c) for c in labels))

    def _longtail(self, train: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        counts = np.bincount(y[train], minlength=int(y.max()) + 1)
        order = np.argsort(-counts, kind="stable")  # head first
        target = longtail_counts(int(counts.max()), len(counts), float(self.imbalance_ratio or 1),
                                 self.profile)
        keep = []
        for rank, c in enumerate(order):
            idx = rng.permutation(train[y[train] == c])
            keep.append(idx[:min(int(target[rank]), len(idx))])
        return rng.permutation(np.concatenate(keep))

    @staticmethod
    def _encode(x: Any, features: list[str], cat: list[str], *parts: np.ndarray,
                ) -> list[np.ndarray]:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        num = [c for c in features if c not in cat]
        ct = ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num),
            ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                  OneHotEncoder(handle_unknown="ignore", sparse_output=False)), cat),
        ], sparse_threshold=0.0)
        x = x.astype({c: str for c in cat})
        ct.fit(x.iloc[parts[0]])
        return [np.asarray(ct.transform(x.iloc[p]), dtype=np.float32) for p in parts]
