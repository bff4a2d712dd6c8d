"""Image folders (a folder per class, or a CSV listing the files): decoded, resized, normalised
and split; their errors; the batch augmentation against torchvision's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imbsweep import data as D
from imbsweep.errors import ConfigError, DataError
from tests.helpers.data import make_pngs


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
    with pytest.raises(ConfigError, match=r"data.channels=2: must be one of 1, 3"):
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


def test_a_folder_of_one_class_is_refused(tmp_path: Path) -> None:
    root = make_pngs(tmp_path / "pets", {"cat": 12})
    with pytest.raises(DataError, match=r"holds images of one class only \('cat'\); a classifier needs at least 2"):
        D.ImageFolder(path=str(root), image_size=8, n_val_per_class=2, n_test_per_class=2).build()


def test_a_ratio_above_the_head_count_says_what_it_gives(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        counts = D.longtail_counts(50, 3, 1e308)
    assert counts.tolist() == [50, 1, 1]
    assert "data.imbalance_ratio=1e+308 is more than the 50 training examples of the most frequent class: the " \
           "rarest keeps 1, so the ratio is 50" in caplog.text
