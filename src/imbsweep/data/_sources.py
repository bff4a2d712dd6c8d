"""Dataset sources. Each is a small dataclass whose fields are its config keys
(``conf/data/*.yaml`` holds ``_target_`` plus these fields) and whose ``build()`` makes
the :class:`Dataset`."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..constraints import SEED, Constraint, Interval, Options, fields_of, validate
from ..errors import ConfigError
from ._dataset import Dataset, spec_digest
from ._longtail import (
    PROFILES,
    balanced_holdout,
    longtail_counts,
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
    kind: ClassVar[str] = "vector"
    image_shape: ClassVar[tuple[int, int, int] | None] = None
    _parameter_constraints: ClassVar[Mapping[str, Sequence[Constraint]]] = {
        "imbalance_ratio": [Interval(float, 1, None)], "profile": [Options(*PROFILES)],
        "n_train_max": [Interval(int, 1, None)], "n_val_per_class": [Interval(int, 1, None)],
        "n_test_per_class": [Interval(int, 1, None)], "scaling": [Options(*SCALINGS)], "seed": [SEED]}

    def __post_init__(self) -> None:
        validate(type(self), fields_of(self), "data")

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
        # generated offline: the digest of what generated it stands for the file's contents
        meta = {"source": f"generated: {self.generator()}", "digest": spec_digest(self.spec())}
        return Dataset(self.name, xtr.astype(np.float32), y[train].astype(np.int64),
                       xva.astype(np.float32), y[val].astype(np.int64),
                       xte.astype(np.float32), y[test].astype(np.int64), names,
                       kind=self.kind, image_shape=self.image_shape, meta=meta)

    def generator(self) -> str:
        """Where the raw examples come from, in words."""
        return self.name


@dataclass
class MNIST1DLT(LongTailSource):
    """MNIST-1D (Greydanus 2020), generated offline with ``mnist1d.data.make_dataset``.

    ``make_dataset`` yields exactly ``num_samples // 10`` examples per class, so it is asked
    for ``10 * (n_train_max + n_val_per_class + n_test_per_class)``.
    """

    scaling: str = "global"
    name: ClassVar[str] = "mnist1d_lt"
    kind: ClassVar[str] = "sequence"

    def generator(self) -> str:
        from importlib.metadata import version

        return f"mnist1d {version('mnist1d')} make_dataset"

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
    kind: ClassVar[str] = "image"
    image_shape: ClassVar[tuple[int, int, int] | None] = (1, 8, 8)  # stored flat: 64 pixels a row

    def generator(self) -> str:
        return "scikit-learn load_digits (bundled)"

    def raw(self) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.data, d.target.astype(np.int64), tuple(str(i) for i in range(10))


#: scikit-learn's bundled classification tables (nothing downloaded): name -> its loader's name
TABLES = {"wine": "load_wine", "breast_cancer": "load_breast_cancer", "iris": "load_iris"}


@dataclass
class BundledTableLT(LongTailSource):
    """One of scikit-learn's bundled tables (``table``: wine, breast_cancer or iris) made
    long-tailed as every source here is: balanced validation and test sets held out per class,
    the rest subsampled to the long-tailed profile. Tiny (150 to 569 rows): a dataset among
    several for a comparison across datasets, not a benchmark of its own."""

    table: str = "wine"
    imbalance_ratio: float = 10.0
    n_train_max: int = 30
    n_val_per_class: int = 8
    n_test_per_class: int = 15
    name: ClassVar[str] = "table_lt"
    _parameter_constraints = {"table": [Options(*TABLES)]}

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "name": f"{self.table}_lt"}

    def build(self) -> Dataset:
        return dataclasses.replace(super().build(), name=f"{self.table}_lt")

    def generator(self) -> str:
        return f"scikit-learn {TABLES[self.table]} (bundled)"

    def raw(self) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        import sklearn.datasets

        d = getattr(sklearn.datasets, TABLES[self.table])()
        return np.asarray(d.data, dtype=np.float64), d.target.astype(np.int64), tuple(str(n) for n in d.target_names)


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
    _parameter_constraints = {
        "n_classes": [Interval(int, 2, None)], "n_features": [Interval(int, 1, None)],
        "n_informative": [Interval(int, 1, None)], "n_clusters_per_class": [Interval(int, 1, None)],
        "class_sep": [Interval(float, None, None)], "flip_y": [Interval(float, 0, 1)]}

    def generator(self) -> str:
        return "scikit-learn make_classification"

    def __post_init__(self) -> None:
        super().__post_init__()
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
