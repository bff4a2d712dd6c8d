"""The built-in datasets (digits, MNIST-1D, synthetic): long-tailed training splits, balanced
val/test splits, scaling fit on the training split only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imbsweep import data as D

SRC_CONF = Path(__file__).resolve().parents[2] / "src" / "imbsweep" / "conf"


def test_digits_lt_splits_are_balanced_and_disjoint() -> None:
    src = D.DigitsLT(imbalance_ratio=10, n_train_max=100, n_val_per_class=20, n_test_per_class=50)
    ds = src.build()
    assert ds.train_class_counts.tolist() == D.longtail_counts(100, 10, 10).tolist()
    assert np.bincount(ds.y_val).tolist() == [20] * 10
    assert np.bincount(ds.y_test).tolist() == [50] * 10
    # no example appears in two splits (digits has no exact duplicates across these rows)
    rows = lambda x: {r.tobytes() for r in x}  # noqa: E731
    assert not rows(ds.x_train) & rows(ds.x_test) and not rows(ds.x_train) & rows(ds.x_val)


def test_scaling_is_fit_on_the_training_split_only() -> None:
    ds = D.DigitsLT().build()
    used = ds.x_train.std(axis=0) > 0
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=0)[used], 1, atol=1e-4)
    # val/test were transformed with the training statistics, so they are not exactly standard
    assert np.abs(ds.x_test.mean(axis=0)).max() > 1e-3


def test_global_scaling_keeps_sequence_shape() -> None:
    rng = np.random.default_rng(0)
    tr, te = rng.normal(3, 2, (50, 8)), rng.normal(3, 2, (20, 8))
    out, (te2,) = D.scale(tr, [te], "global")
    assert abs(out.mean()) < 1e-9 and abs(out.std() - 1) < 1e-9
    np.testing.assert_allclose(te2, (te - tr.mean()) / tr.std())


def test_mnist1d_lt_is_generated_offline_with_the_asked_counts() -> None:
    src = D.MNIST1DLT(imbalance_ratio=10, n_train_max=40, n_val_per_class=5, n_test_per_class=7)
    ds = src.build()
    assert ds.x_train.shape[1] == 40 and ds.n_classes == 10
    assert ds.train_class_counts.tolist() == D.longtail_counts(40, 10, 10).tolist()
    assert np.bincount(ds.y_test).tolist() == [7] * 10
    before = np.random.get_state()
    D.MNIST1DLT(n_train_max=5, n_val_per_class=1, n_test_per_class=1).build()
    after = np.random.get_state()
    assert isinstance(before, tuple) and isinstance(after, tuple)  # ("MT19937", key, pos, ...)
    assert after[1][:4].tolist() == before[1][:4].tolist()  # numpy's global RNG left alone


def test_synthetic_has_the_profile() -> None:
    ds = D.Synthetic(imbalance_ratio=20, n_train_max=200, n_val_per_class=30,
                     n_test_per_class=30, n_classes=5, n_informative=5, n_features=8).build()
    assert ds.train_class_counts.tolist() == D.longtail_counts(200, 5, 20).tolist()
    assert np.bincount(ds.y_val).tolist() == [30] * 5


@pytest.mark.parametrize(("table", "classes", "head", "ratio"), [
    ("wine", 3, 30, 10.0), ("breast_cancer", 2, 120, 5.0), ("iris", 3, 25, 10.0)])
def test_a_bundled_table_is_made_long_tailed_with_balanced_held_out_sets(table: str, classes: int, head: int,
                                                                       ratio: float) -> None:
    """scikit-learn's bundled wine, breast_cancer and iris (nothing downloaded), as the configs
    data=wine_lt, breast_cancer_lt, iris_lt set them: the head class keeps n_train_max, the
    tail n_train_max / ratio (the exponential profile), validation and test balanced and
    disjoint from training."""
    import numpy as np
    import yaml

    from imbsweep.data import BundledTableLT
    from imbsweep.data._longtail import longtail_counts

    conf = yaml.safe_load((SRC_CONF / "data" / f"{table}_lt.yaml").read_text())
    keys = {k: v for k, v in conf.items() if k not in ("defaults", "_target_")}
    ds = BundledTableLT(**keys).build()
    assert ds.name == f"{table}_lt" and len(ds.class_names) == classes
    counts = np.bincount(ds.y_train, minlength=classes)
    assert list(counts) == list(longtail_counts(head, classes, ratio, "exp")) and counts[0] == head
    assert counts[-1] == int(head / ratio) or counts[-1] == round(head / ratio)
    for y, n in ((ds.y_val, keys["n_val_per_class"]), (ds.y_test, keys["n_test_per_class"])):
        assert list(np.bincount(y, minlength=classes)) == [n] * classes
    rows = {tuple(r) for r in np.round(ds.x_train, 6)}
    assert not rows & {tuple(r) for r in np.round(ds.x_test, 6)}


def test_an_unknown_bundled_table_is_one_line() -> None:
    from imbsweep.data import BundledTableLT
    from imbsweep.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.table='adult': must be one of wine, breast_cancer, iris"):
        BundledTableLT(table="adult")
