from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from imbsweep import data as D
from imbsweep.errors import ConfigError, DataError

from .helpers.data import make_pngs, messy


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
    state = np.random.get_state(legacy=True)
    assert isinstance(state, tuple)
    D.MNIST1DLT(n_train_max=5, n_val_per_class=1, n_test_per_class=1).build()
    after = np.random.get_state(legacy=True)
    assert isinstance(after, tuple) and after[1][:4].tolist() == state[1][:4].tolist()  # numpy's global RNG left alone


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


# --- your own tables: columns, missing values, rare classes ------------------------------------

def _write(df: pd.DataFrame, path: Path) -> str:
    df.to_csv(path, index=False) if path.suffix == ".csv" else df.to_parquet(path)
    return str(path)


def test_columns_that_cannot_be_features_are_dropped_with_one_warning(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    path = _write(messy(), tmp_path / "t.csv")
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

    path = _write(messy(), tmp_path / "t.csv")
    lists = OmegaConf.create({"f": ["x", "island"], "c": [], "d": ["note"]})
    ds = D.Tabular(path=path, target="label", features=lists.f, categorical=["island"]).build()
    assert [f["name"] for f in ds.meta["features"]] == ["x", "island"]
    ds = D.Tabular(path=path, target="label", drop=lists.d, categorical=lists.c, features=["x"]).build()
    assert ds.x_train.shape[1] == 1
    bad: list[tuple[dict[str, Any], str]] = [
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
    df = messy()
    df.loc[5:7, "label"] = None  # rows without a label: dropped, with a warning, whatever data.nan says
    path = _write(df, tmp_path / "t.parquet")
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

    ds = D.Tabular(path=_write(messy(), tmp_path / "t.csv"), target="label").build()
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


def test_class_keys_are_one_to_one() -> None:
    from imbsweep.metrics import class_keys

    assert class_keys([str(i) for i in range(10)]) == [str(i) for i in range(10)]  # plain labels stay
    assert class_keys(["Adelie", "Gentoo"]) == ["Adelie", "Gentoo"]
    assert class_keys(["<4.8kg", ">4.8kg", "teacher/nurse"]) == ["0__4.8kg", "1__4.8kg", "2_teacher_nurse"]
    rng = np.random.default_rng(0)
    for _ in range(200):  # labels from a small alphabet of characters MLflow rejects: never two alike
        labels = sorted({"".join(rng.choice(list("a/<>!? "), 3)) for _ in range(12)})
        keys = class_keys(labels)
        assert len(set(keys)) == len(labels) and all("/" not in k for k in keys)


def test_numeric_labels_sort_as_numbers(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.choice([2, 10, 3], 90)
    path = _write(pd.DataFrame({"x": rng.normal(size=90), "y": y.astype(float)}), tmp_path / "n.csv")
    assert D.Tabular(path=path, target="y").build().class_names == ("2", "3", "10")


def test_dataset_record_names_the_file_its_digest_and_columns(tmp_path: Path) -> None:
    import hashlib
    import json

    path = _write(messy(), tmp_path / "penguins.csv")
    ds = D.Tabular(path=path, target="label").build()
    who = D.identity(ds)
    assert who["digest"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    assert who["name"] == "penguins.csv" and who["source"] == str(Path(path).resolve())
    entry = D.dataset_input(ds)
    schema = json.loads(entry.dataset.schema)["mlflow_colspec"]
    assert [(c["name"], c["type"]) for c in schema] == [("x", "double"), ("island", "string")]
    prof = json.loads(entry.dataset.profile)
    assert prof["rows"] == {s: len(getattr(ds, f"y_{s}")) for s in ("train", "val", "test")}
    assert prof["class_counts"]["rare"] == [2, 0, 0] and prof["not_evaluated"]["val"] == ["rare"]
    assert {t.key: t.value for t in entry.tags} == {"mlflow.data.context": "training"}


def test_study_data_check() -> None:
    import json

    a = {"name": "a.csv", "source": "/x/a.csv", "digest": "1111"}
    D.check_study_data(None, a, "s")  # a new study
    D.check_study_data(json.dumps({**a, "source": "/moved/a.csv"}), a, "s")  # same bytes elsewhere: same data
    with pytest.raises(ConfigError, match=r"hydra.sweeper.study_name='s': this study was run on a.csv \(digest "
                                          r"1111.*this sweep's data is b.csv \(digest 2222.*study_name=s_2222"):
        D.check_study_data(json.dumps(a), {"name": "b.csv", "source": "/x/b.csv", "digest": "2222"}, "s")


def test_disk_cache_is_bounded_least_recently_used_first(tmp_path: Path) -> None:
    import os
    import time

    srcs = [D.Synthetic(n_classes=3, n_features=4, n_informative=2, n_train_max=400 + 100 * i,
                        n_val_per_class=5, n_test_per_class=5) for i in range(4)]
    size = []
    for i, s in enumerate(srcs[:3]):
        D.cached(s.spec(), s.build, tmp_path, max_mb=None)
        path = tmp_path / f"synthetic-{D.cache_key(s.spec())}.npz"
        os.utime(path, (time.time() - 100 + i, time.time() - 100 + i))  # written in this order
        size.append(path.stat().st_size)
    D.clear_memory_cache()
    D.cached(srcs[0].spec(), srcs[0].build, tmp_path)  # a read counts as a use: 0 is now the most recent
    limit = (size[0] + size[2] + 30_000) / 1e6  # room for 0, 2 and the new file, not for 1 as well
    D.cached(srcs[3].spec(), srcs[3].build, tmp_path, max_mb=limit)
    left = {p.name for p in tmp_path.glob("*.npz")}
    keys = [D.cache_key(s.spec()) for s in srcs]
    assert f"synthetic-{keys[1]}.npz" not in left  # the least recently used went first
    assert {f"synthetic-{keys[i]}.npz" for i in (0, 3)} <= left
    assert sum(p.stat().st_size for p in tmp_path.glob("*.npz")) <= limit * 1e6
    n, _ = D.clear_disk_cache(tmp_path)
    assert n == len(left) and not list(tmp_path.glob("*.npz"))
    D.clear_memory_cache()


# --- image folders -------------------------------------------------------------------------------

def test_image_folder_decodes_resizes_normalises_and_splits(tmp_path: Path) -> None:
    root = make_pngs(tmp_path / "pets", {"cat": 30, "dog": 24, "eel": 20})
    src = D.ImageFolder(path=str(root), image_size=8, n_val_per_class=4, n_test_per_class=5, imbalance_ratio=4)
    ds = src.build()
    assert ds.kind == "image" and ds.image_shape == (3, 8, 8) and ds.x_train.shape[1:] == (3, 8, 8)
    assert ds.class_names == ("cat", "dog", "eel")
    assert np.bincount(ds.y_val).tolist() == [4, 4, 4] and np.bincount(ds.y_test).tolist() == [5, 5, 5]
    # head = class 0 with its whole pool (21); tail 21/4 -> 5; the middle sqrt: 21/2 -> 10
    assert ds.train_class_counts.tolist() == D.longtail_counts(21, 3, 4).tolist()
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)  # fit on training only
    np.testing.assert_allclose(ds.x_train.std(axis=(0, 2, 3)), 1, atol=1e-2)
    assert ds.x_train[:, 0].mean() > 0 and ds.meta["files"] == 74 and len(ds.meta["digest"]) == 16
    # the same images listed in a CSV (paths relative to it) give the same dataset
    rows = [(f"pets/{c}/{p.name}", c) for c in ("cat", "dog", "eel") for p in sorted((root / c).iterdir())]
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(tmp_path / "images.csv", index=False)
    ds2 = D.ImageFolder(path=str(tmp_path / "images.csv"), image_size=8, n_val_per_class=4, n_test_per_class=5,
                        imbalance_ratio=4).build()
    assert ds2.class_names == ds.class_names
    np.testing.assert_array_equal(ds2.x_train, ds.x_train)
    # a changed file changes the cache key; augmentation settings do not
    assert D.cache_key(src.spec()) == D.cache_key(D.ImageFolder(
        path=str(root), image_size=8, n_val_per_class=4, n_test_per_class=5, imbalance_ratio=4,
        random_flip=False).spec())
    before = D.cache_key(src.spec())
    make_pngs(tmp_path / "other", {"cat": 1}, size=(20, 20))  # replace an image by another one
    (tmp_path / "other" / "cat" / "000.png").replace(root / "cat" / "000.png")
    assert D.cache_key(src.spec()) != before


def test_image_folder_errors(tmp_path: Path) -> None:
    root = make_pngs(tmp_path / "pets", {"cat": 5, "dog": 12})
    with pytest.raises(DataError, match=r"data.n_val_per_class=10: class 0 has 5 images; .* data.holdout=stratified"):
        D.ImageFolder(path=str(root)).build()
    ds = D.ImageFolder(path=str(root), holdout="stratified", image_size=8).build()
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 17
    (root / "dog" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot decode .*bad.png"):
        D.ImageFolder(path=str(root), holdout="stratified", image_size=8).build()
    with pytest.raises(DataError, match=r"data.path='nowhere': no such folder"):
        D.ImageFolder(path="nowhere")
    with pytest.raises(ConfigError, match=r"data.channels=2: must be 1 \(grayscale\) or 3"):
        D.ImageFolder(path=str(root), channels=2)


def test_batch_augment_is_torchvisions_crop_and_flip_per_image() -> None:
    import torch

    tv = D.import_torchvision()
    from torchvision.transforms.v2 import functional as TF

    assert tv.__version__.startswith("0.28")
    x = torch.randn(6, 3, 8, 8)
    fill = [-0.5, 0.0, 0.7]
    aug = D.Augment(padding=2, flip=True, fill=fill, seed=3)
    out = aug(x)
    # replay the generator: the same offsets and flips, one image at a time through torchvision
    g = torch.Generator().manual_seed(3 + 7919)
    i, j = torch.randint(0, 5, (6,), generator=g), torch.randint(0, 5, (6,), generator=g)
    flips = torch.rand(6, generator=g) < 0.5
    for k in range(6):
        padded = torch.stack([TF.pad(x[k, c:c + 1], [2], fill=fill[c])[0] for c in range(3)])
        want = TF.crop(padded, int(i[k]), int(j[k]), 8, 8)
        want = TF.horizontal_flip(want) if flips[k] else want
        torch.testing.assert_close(out[k], want)
    assert flips.any() and not flips.all()


def test_resnet32_has_the_papers_size_and_loads_local_weights(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    import torch

    from imbsweep.models import ResNet

    def n_params(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    # the CIFAR ResNets' sizes (He et al. 2016; 0.27M, 0.46M, 0.85M as usually reported)
    assert [n_params(ResNet(3072, 10, (3, 32, 32), depth=d)) for d in (20, 32, 56)] == [269722, 464154, 853018]
    m = ResNet(192, 3, (3, 8, 8), depth=8, width=4)
    assert m(torch.zeros(2, 192)).shape == (2, 3)  # flat rows are seen as images
    torch.save(m.state_dict(), tmp_path / "w.pt")
    m2 = ResNet(192, 5, (3, 8, 8), depth=8, width=4, weights=str(tmp_path / "w.pt"))  # 5 classes: head skipped
    torch.testing.assert_close(m2.features[1].weight, m.features[1].weight)  # type: ignore[index]
    assert "not loaded (name or shape differ): head.bias, head.weight" in caplog.text
    r18 = ResNet(192, 4, (3, 8, 8), arch="resnet18")
    assert r18(torch.zeros(2, 3, 8, 8)).shape == (2, 4) and isinstance(r18.head, torch.nn.Linear)
    with pytest.raises(ConfigError, match=r"model.weights='nope.pt': no such file"):
        ResNet(192, 3, (3, 8, 8), weights="nope.pt")
    with pytest.raises(ConfigError, match=r"model.depth=30: must be 6n \+ 2"):
        ResNet(192, 3, (3, 8, 8), depth=30)
    capped = ResNet(192, 3, (3, 8, 8), depth=8, width=4, max_norm=0.1)  # weight balancing works on it too
    capped.apply_max_norm()
    assert float(capped.head.weight.detach().norm(dim=1).max()) <= 0.1 + 1e-6  # type: ignore[operator]


def test_amp_is_off_on_the_cpu_and_checked() -> None:
    from imbsweep._amp import Amp

    assert not Amp("cpu", "auto").enabled and Amp("cpu", False).scaler is None
    with pytest.raises(ConfigError, match=r"trainer.amp=True: mixed precision needs CUDA"):
        Amp("cpu", True)
    with pytest.raises(ConfigError, match=r"trainer.amp='fp16': must be auto, true or false"):
        Amp("cpu", "fp16")
