from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imbsweep import data as D
from imbsweep.errors import ConfigError, DataError


def test_exp_profile_follows_the_formula() -> None:
    counts = D.longtail_counts(1000, 10, 100, "exp")
    expected = [int(np.floor(1000 * 100 ** (-i / 9) + 1e-9)) for i in range(10)]
    assert counts.tolist() == expected
    assert counts[0] == 1000 and counts[-1] == 10  # ratio exactly n_max / n_min
    assert (np.diff(counts) <= 0).all()


def test_step_profile_and_balanced() -> None:
    assert D.longtail_counts(500, 4, 10, "step").tolist() == [500, 500, 50, 50]
    assert D.longtail_counts(300, 5, 1, "exp").tolist() == [300] * 5


@pytest.mark.parametrize(("key", "kwargs"), [
    ("data.imbalance_ratio", {"imbalance_ratio": 0.5}),
    ("data.profile", {"profile": "linear"}),
])
def test_profile_errors_name_the_key(key: str, kwargs: dict) -> None:
    args = {"n_max": 10, "n_classes": 3, "imbalance_ratio": 10, "profile": "exp", **kwargs}
    with pytest.raises(ConfigError, match=key):
        D.longtail_counts(**args)


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
    state = np.random.get_state()[1][:4].tolist()
    D.MNIST1DLT(n_train_max=5, n_val_per_class=1, n_test_per_class=1).build()
    assert np.random.get_state()[1][:4].tolist() == state  # numpy's global RNG left alone


def test_synthetic_has_the_profile() -> None:
    ds = D.Synthetic(imbalance_ratio=20, n_train_max=200, n_val_per_class=30,
                     n_test_per_class=30, n_classes=5, n_informative=5, n_features=8).build()
    assert ds.train_class_counts.tolist() == D.longtail_counts(200, 5, 20).tolist()
    assert np.bincount(ds.y_val).tolist() == [30] * 5


def test_cache_reads_back_from_disk_and_memory(tmp_path: Path) -> None:
    calls = []
    src = D.DigitsLT()

    def build() -> D.Dataset:
        calls.append(1)
        return src.build()

    a = D.cached(src.spec(), build, tmp_path)
    assert D.cached(src.spec(), build, tmp_path) is a  # memory
    D.clear_memory_cache()
    b = D.cached(src.spec(), build, tmp_path)  # disk
    assert len(calls) == 1 and b is not a
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert b.class_names == a.class_names
    other = D.DigitsLT(imbalance_ratio=5)
    assert D.cache_key(other.spec()) != D.cache_key(src.spec())
    assert len(list(tmp_path.glob("*.npz"))) == 1


def _table(n_per_class: dict[str, int], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = np.concatenate([[k] * v for k, v in n_per_class.items()])
    return pd.DataFrame({
        "num": rng.normal(size=len(labels)) + (labels == "b"),
        "color": rng.choice(["red", "green"], size=len(labels)),
        "gap": np.where(rng.random(len(labels)) < 0.1, np.nan, rng.normal(size=len(labels))),
        "label": labels,
    })


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_tabular_reads_csv_and_parquet(tmp_path: Path, suffix: str) -> None:
    df = _table({"a": 200, "b": 60, "c": 10})
    path = tmp_path / f"t{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    ds = D.Tabular(path=str(path), target="label").build()
    assert ds.class_names == ("a", "b", "c")
    # stratified: the natural distribution in every split, every class present everywhere
    # 15% of 200/60/10 rounds to 30/9/2 (round half to even: 1.5 -> 2)
    assert ds.train_class_counts.tolist() == [140, 42, 6]
    assert np.bincount(ds.y_val).tolist() == [30, 9, 2]
    assert np.bincount(ds.y_test).tolist() == [30, 9, 2]
    # num + gap (imputed) + color one-hot (2 levels)
    assert ds.x_train.shape[1] == 4 and np.isfinite(ds.x_train).all()


def test_tabular_longtail_option(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    _table({"a": 300, "b": 300, "c": 300}).to_csv(path, index=False)
    ds = D.Tabular(path=str(path), target="label", imbalance_ratio=10).build()
    assert ds.train_class_counts.tolist() == D.longtail_counts(210, 3, 10).tolist()


def test_tabular_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.path='nope.csv': no such file"):
        D.Tabular(path="nope.csv", target="y")
    path = tmp_path / "t.csv"
    _table({"a": 5, "b": 1}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"data.target='y': no such column .* num, color, gap, label"):
        D.Tabular(path=str(path), target="y").build()
    with pytest.raises(DataError, match=r"data.target='label': class 'b' has 1 example"):
        D.Tabular(path=str(path), target="label").build()
