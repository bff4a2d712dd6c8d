"""Your own tables (CSV, Parquet) as datasets: stratified splits, the long-tail option, columns
that cannot be features, missing values, rare classes, numeric labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from imbsweep import data as D
from imbsweep.errors import ConfigError, DataError
from tests.helpers.data import messy_table, write_table


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


# --- your own tables: columns, missing values, rare classes ------------------------------------

def test_columns_that_cannot_be_features_are_dropped_with_one_warning(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    path = write_table(messy_table(), tmp_path / "t.csv")
    ds = D.Tabular(path=path, target="label", max_categories=50).build()
    assert ds.meta["dropped"] == {"row_id": "unique per row: an id?", "uid": "unique per row: an id?",
                                  "when": "dates", "note": "free text: 80 distinct values > data.max_categories=50"}
    assert [f["name"] for f in ds.meta["features"]] == ["x", "island"]
    # x (imputed) + island one-hot: Biscoe, Dream and missing as a level of its own
    assert ds.x_train.shape[1] == 4 and np.isfinite(ds.x_train).all()
    (line,) = [w for w in ds.meta["warnings"] if "not used as features" in w]
    assert all(c in line for c in ("'row_id'", "'uid'", "'when'", "'note'", "data.features", "data.drop"))
    # named explicitly, they are used: the id as a number, the dates as days, the text one-hot
    ds2 = D.Tabular(path=path, target="label", features=["row_id", "when", "note", "x"],
                    categorical=["note"]).build()
    assert not ds2.meta["dropped"] and ds2.x_train.shape[1] > 3 + 50  # note: one-hot over its training levels
    assert [f["type"] for f in ds2.meta["features"]] == ["long", "datetime", "string", "double"]


def test_hydra_lists_and_column_errors(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    path = write_table(messy_table(), tmp_path / "t.csv")
    lists = OmegaConf.create({"f": ["x", "island"], "c": [], "d": ["note"]})
    ds = D.Tabular(path=path, target="label", features=lists.f, categorical=["island"]).build()
    assert [f["name"] for f in ds.meta["features"]] == ["x", "island"]
    ds = D.Tabular(path=path, target="label", drop=lists.d, categorical=lists.c, features=["x"]).build()
    assert ds.x_train.shape[1] == 1
    bad: list[tuple[dict[str, Any], str]] = [  # any value a config could hold
        ({"features": ["x", "nope"]}, r"data.features=\['nope'\]: no such column\(s\) in .*columns are: row_id"),
        ({"drop": ["nope"]}, r"data.drop=\['nope'\]: no such column"),
        ({"categorical": ["nope"]}, r"data.categorical=\['nope'\]: no such column"),
        ({"features": ["x", "label"]}, r"data.features=\['x', 'label'\]: lists the target 'label'"),
        ({"categorical": ["label"]}, r"data.categorical=\['label'\]: lists the target"),
        ({"features": ["x", "island"], "categorical": []}, r"data.categorical=\[\]: 'island' is text"),
        ({"features": ["x"], "drop": ["x"]}, r"data.drop=\['x'\]: x also in data.features"),
        ({"features": ["x"], "categorical": ["island"]}, r"data.categorical=\['island'\]: island not in data.features"),
        ({"features": 3}, r"data.features=3: must be null or a list of column names"),
        ({"nan": "zero"}, r"data.nan='zero': must be one of impute, drop_rows, error"),
    ]
    for kwargs, message in bad:  # DataError is a ConfigError: one line, exit code 2
        with pytest.raises(ConfigError, match=message):
            D.Tabular(path=path, target="label", **kwargs).build()


def test_missing_values_impute_drop_rows_or_error(tmp_path: Path) -> None:
    df = messy_table()
    df.loc[5:7, "label"] = None  # rows without a label: dropped, with a warning, whatever data.nan says
    path = write_table(df, tmp_path / "t.parquet")
    imputed = D.Tabular(path=path, target="label").build()
    n_labeled = len(df) - 3
    assert sum(len(getattr(imputed, f"y_{s}")) for s in ("train", "val", "test")) == n_labeled
    assert imputed.meta["missing"] == {"x": 1, "island": int(df.loc[df.label.notna(), "island"].isna().sum())}
    assert any("3 of 120 rows have no label" in w for w in imputed.meta["warnings"])
    dropped = D.Tabular(path=path, target="label", nan="drop_rows").build()
    n_kept = int(df.loc[df.label.notna(), ["x", "island"]].notna().all(axis=1).sum())
    assert sum(len(getattr(dropped, f"y_{s}")) for s in ("train", "val", "test")) == n_kept
    assert any(f"dropped {n_labeled - n_kept} of {n_labeled} labeled rows" in w for w in dropped.meta["warnings"])
    with pytest.raises(DataError, match=r"data.nan='error': missing values in 'x' 1, 'island' \d+"):
        D.Tabular(path=path, target="label", nan="error").build()
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"data.path='.*broken.parquet': cannot be read as a table"):
        D.Tabular(path=str(broken), target="label").build()


def test_rare_classes_are_warned_and_not_evaluated(tmp_path: Path) -> None:
    from imbsweep.metrics import evaluate

    ds = D.Tabular(path=write_table(messy_table(), tmp_path / "t.csv"), target="label").build()
    assert ds.class_names == ("<4.8kg", ">4.8kg", "rare", "teacher/nurse")
    counts = ds.class_counts()
    assert [counts[s][2] for s in ("train", "val", "test")] == [2, 0, 0]  # 2 rows: both train
    assert D.not_evaluated(ds) == {"val": ["rare"], "test": ["rare"]}
    warnings = D.split_warnings(ds)
    assert any("class 'rare' (2 rows) too small for validation and test" in w for w in warnings)
    few = [c for c, n in zip(ds.class_names, counts["val"], strict=True) if 0 < n < 5]
    assert few and any(f"fewer than 5 examples of class {few[0]!r}" in w for w in warnings)
    probs = np.full((len(ds.y_val), 4), 0.25)
    ev = evaluate(probs, ds.y_val, ds.train_class_counts, ds.class_names, "val")
    assert "val/recall/2_rare" not in ev.metrics and "val/recall/0__4.8kg" in ev.metrics  # no recall, not 0


def test_numeric_labels_sort_as_numbers(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.choice([2, 10, 3], 90)
    path = write_table(pd.DataFrame({"x": rng.normal(size=90), "y": y.astype(float)}), tmp_path / "n.csv")
    assert D.Tabular(path=path, target="y").build().class_names == ("2", "3", "10")


def test_duplicate_columns_and_infinite_values_are_one_line_each(tmp_path: Path) -> None:
    """Issue 30: pandas renamed a second ``x`` to ``x.1`` and trained on it; an ``inf`` reached
    scikit-learn's "Input X contains infinity" (exit 1, naming nothing)."""
    rows = "".join(f"{i % 7},{i % 3},{'a' if i % 2 else 'b'}\n" for i in range(40))
    twice = tmp_path / "twice.csv"
    twice.write_text("x,x,label\n" + rows)
    with pytest.raises(DataError, match=r"data.path='.*twice.csv': names 1 column\(s\) more than once: 'x'; give"):
        D.Tabular(path=str(twice), target="label").build()
    huge = tmp_path / "huge.csv"
    huge.write_text("x,y,label\n" + rows + "inf,1,a\n1e309,2,b\n-inf,1e200,a\n")
    with pytest.raises(DataError, match=r"infinite or huge values \(inf, or beyond \+-1e\+150, which cannot be "
                                         r"standardised\) in 'x' 3, 'y' 1 \(rows\): replace them, or list"):
        D.Tabular(path=str(huge), target="label").build()
    big = tmp_path / "big.csv"
    big.write_text("x,y,label\n" + rows + "1e100,1,a\n")
    assert np.isfinite(D.Tabular(path=str(big), target="label").build().x_train).all()  # large, not huge: kept
