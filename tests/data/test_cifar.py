"""CIFAR-10-LT and CIFAR-100-LT: the training counts of the papers' tables, LDAM-DRW's choice of
images, the test file untouched, a validation split disjoint from both, the cache key, the files'
errors and the download, on files generated in CIFAR's own pickle format."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import OmegaConf

from imbsweep import data as D
from imbsweep.errors import ConfigError, DataError
from tests.helpers.cli import run_cli
from tests.helpers.configs import MakeCfg
from tests.helpers.data import CIFAR10_NAMES, cifar_id, make_cifar
from tests.helpers.stores import runs

# CIFAR-10-LT's training images per class at each ratio (exponential profile), and the totals of
# CIFAR-10-LT / CIFAR-100-LT: the numbers of Cao et al. 2019 (LDAM-DRW) and Cui et al. 2019
# (12,406 and 10,847 at ratio 100; 13,996 and 12,608 at 50; 20,431 and 19,573 at 10; 11,203 and
# 9,502 at 200), and of LDAM-DRW's get_img_num_per_cls.
CIFAR10_LT = {
    10: [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500],
    50: [5000, 3237, 2096, 1357, 878, 568, 368, 238, 154, 100],
    100: [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50],
    200: [5000, 2775, 1540, 854, 474, 263, 146, 81, 45, 25],
}
TOTALS = {10: (20431, 19573), 50: (13996, 12608), 100: (12406, 10847), 200: (11203, 9502)}


@pytest.mark.parametrize("ratio", [10, 50, 100, 200])
def test_training_counts_are_the_papers_tables(ratio: int) -> None:
    ten = D.cifar_lt_counts(5000, 10, ratio)
    hundred = D.cifar_lt_counts(500, 100, ratio)
    assert ten == CIFAR10_LT[ratio]
    assert (sum(ten), sum(hundred)) == TOTALS[ratio]
    assert hundred[0] == 500 and hundred[-1] == 500 // ratio and sorted(hundred, reverse=True) == hundred
    # the step profile (Buda et al. 2018, LDAM-DRW's "step"): half the classes at n_max, the rest n_max / ratio
    assert D.cifar_lt_counts(5000, 10, ratio, "step") == [5000] * 5 + [5000 // ratio] * 5


def test_the_kept_images_are_ldam_drws() -> None:
    """LDAM-DRW's gen_imbalanced_data, as written there (np.random.seed, then per class np.where and
    np.random.shuffle), picks the same images; NumPy's global generator is left alone."""
    y = np.random.default_rng(1).permutation(np.repeat(np.arange(10), 40))
    counts = D.cifar_lt_counts(40, 10, 10)
    state = np.random.get_state()
    try:
        np.random.seed(3)
        ldam = []
        for c, n in zip(np.unique(y), counts, strict=True):
            idx = np.where(y == c)[0]
            np.random.shuffle(idx)
            ldam.append(idx[:n])
    finally:
        np.random.set_state(state)
    before = np.random.random_sample()  # the next draw of the global generator, then put back
    np.random.set_state(state)
    ours = [idx[:n] for idx, n in zip(D.ldam_order(y, 10, 3), counts, strict=True)]
    assert all(np.array_equal(a, b) for a, b in zip(ours, ldam, strict=True))
    assert np.random.random_sample() == before
    np.random.set_state(state)


def _ids(ds: D.Dataset, split: str) -> np.ndarray:
    """The ids make_cifar wrote into a split's images, read back through the normalisation."""
    norm = ds.meta["normalize"]
    mean = np.array(norm["mean"], np.float64)[None, :, None, None]
    std = np.array(norm["std"], np.float64)[None, :, None, None]
    raw = np.rint((getattr(ds, f"x_{split}").astype(np.float64) * std + mean) * 255).astype(np.uint8)
    return cifar_id(raw)


@pytest.mark.parametrize("exact", [False, True])
def test_cifar10_lt_splits(tmp_path: Path, exact: bool) -> None:
    files = make_cifar(tmp_path, "CIFAR10", train_per_class=60, test_per_class=8)
    ds = D.CIFAR10LT(root=str(tmp_path), imbalance_ratio=10, n_val_per_class=5, exact_counts=exact, seed=2).build()
    assert ds.name == "cifar10_lt" and ds.class_names == tuple(CIFAR10_NAMES) and ds.kind == "image"
    assert ds.x_train.shape[1:] == (3, 32, 32) and ds.x_train.dtype == np.float32
    table = D.cifar_lt_counts(60, 10, 10)  # [60, 46, 35, 27, 21, 16, 12, 9, 7, 6]
    # training: the papers' counts; the head keeps all 60, so (exact_counts=false) it gives its 5 validation
    # images out of them; exact_counts=true trains on the table and has no head in validation
    assert ds.train_class_counts.tolist() == (table if exact else [55, *table[1:]])
    assert np.bincount(ds.y_val, minlength=10).tolist() == ([0] if exact else [5]) + [5] * 9
    assert D.warnings_of(ds) == (["data: validation holds no example of class 'airplane': not evaluated on "
                                  "validation"] if exact else [])
    train, val, test = _ids(ds, "train"), _ids(ds, "val"), _ids(ds, "test")
    # the images are those LDAM-DRW keeps (the first of each class's shuffled order), the labels theirs
    order = D.ldam_order(files["train_labels"], 10, 2)
    kept = np.concatenate([idx[:n] for idx, n in zip(order, table, strict=True)])
    assert set(train) == set(files["train_ids"][kept]) - (set() if exact else set(val))
    assert np.array_equal(files["train_labels"][train], ds.y_train)
    assert np.array_equal(files["train_labels"][val], ds.y_val)
    # validation: disjoint from training and test, from what the long tail leaves out (the head aside)
    assert len(set(val)) == len(val) and not set(val) & set(train) and not set(val) & set(test)
    left_out = set(files["train_ids"][np.concatenate([idx[n:] for idx, n in zip(order, table, strict=True)])])
    assert {int(i) for i, c in zip(val, ds.y_val, strict=True) if c != 0} <= left_out
    # test: the whole test file, in its order, its pixels as they were (normalised with training's statistics)
    assert np.array_equal(test, files["test_ids"]) and np.array_equal(ds.y_test, files["test_labels"])
    std, mean = (np.array(ds.meta["normalize"][k], np.float32)[:, None, None] for k in ("std", "mean"))
    back = ds.x_test * std + mean
    np.testing.assert_allclose(back * 255, files["test_images"], atol=2e-3)
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)  # fit on training only
    assert ds.meta["official_files"] is False and ds.meta["display_name"] == "cifar10_lt-r10"


def test_cifar100_lt_reads_the_fine_labels(tmp_path: Path) -> None:
    files = make_cifar(tmp_path, "CIFAR100", train_per_class=40, test_per_class=2)
    ds = D.CIFAR100LT(root=str(tmp_path), imbalance_ratio=10).build()
    assert ds.name == "cifar100_lt" and len(ds.class_names) == 100 and ds.class_names[7] == "fine_07"
    table = D.cifar_lt_counts(40, 100, 10)
    assert table[0] == 40 and table[-1] == 4
    val_counts = np.bincount(ds.y_val, minlength=100)
    assert val_counts.tolist() == [10] * 100  # the default: 10 per class
    # a class that leaves fewer than 10 out gives the rest from what it keeps; the others train on the table
    left_out = [n_all - n for n_all, n in zip([40] * 100, table, strict=True)]
    want = [n - max(10 - left, 0) for n, left in zip(table, left_out, strict=True)]
    assert ds.train_class_counts.tolist() == want and want[:2] == [30, 30] and want[-1] == 4
    train, val, test = _ids(ds, "train"), _ids(ds, "val"), _ids(ds, "test")
    assert not set(train) & set(val) and np.array_equal(test, files["test_ids"])
    assert np.array_equal(ds.y_test, files["test_labels"]) and len(ds.y_test) == 200


@pytest.mark.slow  # full-size files (60,000 images, 184 MB): about 10 s and 1.5 GB each
@pytest.mark.parametrize("which", ["CIFAR10", "CIFAR100"])
def test_full_size_files_give_the_papers_counts(tmp_path: Path, which: str) -> None:
    ten = which == "CIFAR10"
    make_cifar(tmp_path, which, train_per_class=5000 if ten else 500, test_per_class=1000 if ten else 100)
    source = D.CIFAR10LT if ten else D.CIFAR100LT
    exact = source(root=str(tmp_path), exact_counts=True).build()
    assert len(exact.y_train) == (12406 if ten else 10847) and len(exact.y_test) == 10000
    if ten:
        assert exact.train_class_counts.tolist() == CIFAR10_LT[100]
    default = source(root=str(tmp_path)).build()
    head = 5000 - 50 if ten else 500 - 10
    assert default.train_class_counts.tolist() == [head, *exact.train_class_counts.tolist()[1:]]
    assert len(default.y_val) == (500 if ten else 1000)


def test_the_cache_key_holds_the_ratio_the_split_and_the_files(tmp_path: Path) -> None:
    make_cifar(tmp_path, "CIFAR10", train_per_class=30, test_per_class=2)

    def key(**kw: Any) -> str:
        return D.cache_key(D.CIFAR10LT(root=str(tmp_path), **kw).spec())

    base = key()
    assert base == key(random_flip=False, random_crop_padding=0)  # augmentation is applied at training time
    others = [key(imbalance_ratio=10), key(n_val_per_class=3), key(exact_counts=True), key(seed=1),
              key(profile="step")]
    assert len({base, *others}) == 6
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes())  # the same bytes, written again: another file version
    assert key() != base
    # a study's data: the files' digest with the split settings, so another ratio is another dataset
    a = D.CIFAR10LT(root=str(tmp_path), imbalance_ratio=10, n_val_per_class=3).build()
    b = D.CIFAR10LT(root=str(tmp_path), imbalance_ratio=20, n_val_per_class=3).build()
    assert D.identity(a)["digest"] != D.identity(b)["digest"]
    assert D.identity(a)["name"] == "cifar10_lt-r10"


def test_missing_files_are_one_line_naming_the_folder_and_the_key(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        D.CIFAR10LT(root=str(tmp_path / "nowhere"))
    folder = tmp_path / "nowhere" / "cifar-10-batches-py"
    assert str(err.value) == (
        f"data.root='{tmp_path / 'nowhere'}': no CIFAR-10 files in {folder}: extract cifar-10-python.tar.gz "
        f"(https://www.cs.toronto.edu/~kriz/cifar.html) into {tmp_path / 'nowhere'} (torchvision's layout: "
        "cifar-10-batches-py/data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch, "
        "batches.meta), or add data.download=true to let torchvision fetch it")
    make_cifar(tmp_path, "CIFAR100", train_per_class=5, test_per_class=1)
    (tmp_path / "cifar-100-python" / "test").unlink()
    with pytest.raises(DataError, match=r"cifar-100-python lacks test: extract cifar-100-python.tar.gz .* "
                                        r"or add data.download=true"):
        D.CIFAR100LT(root=str(tmp_path))


def test_bad_settings_and_bad_files(tmp_path: Path) -> None:
    make_cifar(tmp_path, "CIFAR10", train_per_class=20, test_per_class=1)
    root = str(tmp_path)
    with pytest.raises(ConfigError, match=r"data.imbalance_ratio=50: leaves class 7 with no training image "
                                          r"\(CIFAR-10 has 20 per class\): use a smaller ratio"):
        D.CIFAR10LT(root=root, imbalance_ratio=50).build()
    with pytest.raises(ConfigError, match=r"data.exact_counts=True: at imbalance_ratio=1 the long tail leaves no "
                                          r"training image out, so validation would be empty"):
        D.CIFAR10LT(root=root, imbalance_ratio=1, exact_counts=True).build()
    with pytest.raises(ConfigError, match=r"data.n_val_per_class=20: class 0 \(airplane\) keeps 20 training images"):
        D.CIFAR10LT(root=root, n_val_per_class=20, imbalance_ratio=2).build()
    with pytest.raises(ConfigError, match=r"data.profile='linear': must be one of exp, step"):
        D.CIFAR10LT(root=root, profile="linear")
    with pytest.raises(ConfigError, match=r"data.imbalance_ratio=0.5: must be a finite number >= 1"):
        D.CIFAR10LT(root=root, imbalance_ratio=0.5)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"cannot read .*data_batch_2: UnpicklingError"):
        D.CIFAR10LT(root=root, imbalance_ratio=2, n_val_per_class=2).build()


def test_download_goes_through_torchvision_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tv = D.import_torchvision()
    calls: list[tuple[str, bool, bool]] = []

    class FakeCIFAR10:  # torchvision's CIFAR10(root, train, download) fetching the archive: offline here
        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            calls.append((root, train, download))
            make_cifar(Path(root), "CIFAR10", train_per_class=20, test_per_class=1)

    monkeypatch.setattr(tv.datasets, "CIFAR10", FakeCIFAR10)
    root = tmp_path / "fetched"
    ds = D.CIFAR10LT(root=str(root), download=True, imbalance_ratio=2, n_val_per_class=2).build()
    assert calls == [(str(root), True, True)] and len(ds.y_test) == 10
    D.CIFAR10LT(root=str(root), download=True, imbalance_ratio=2, n_val_per_class=2).spec()
    assert len(calls) == 1  # the files are there: nothing fetched, nothing checked again

    class Offline:
        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(tv.datasets, "CIFAR10", Offline)
    with pytest.raises(DataError, match=r"data.download=True: torchvision could not fetch CIFAR-10 into .*offline: "
                                        r"RuntimeError: <urlopen error .*; put the extracted cifar-10-python.tar.gz"):
        D.CIFAR10LT(root=str(tmp_path / "offline"), download=True).spec()


def test_the_layout_is_torchvisions() -> None:
    tv = D.import_torchvision()
    from imbsweep.data._cifar import LAYOUTS

    for name, lay in LAYOUTS.items():
        cls = getattr(tv.datasets, name)
        assert lay.base_folder == cls.base_folder and lay.archive == cls.filename
        assert [list(t) for t in lay.train] == cls.train_list and [list(t) for t in lay.test] == cls.test_list
        assert lay.meta == (cls.meta["filename"], cls.meta["md5"]) and lay.names_key == cls.meta["key"]


@pytest.mark.parametrize(("option", "cls"), [("cifar10_lt", D.CIFAR10LT), ("cifar100_lt", D.CIFAR100LT)])
def test_the_config_options_mirror_the_sources_and_pick_resnet32(make_cfg: MakeCfg, tmp_path: Path, option: str,
                                                                  cls: type) -> None:
    which = "CIFAR10" if option == "cifar10_lt" else "CIFAR100"
    make_cifar(tmp_path / "files", which, train_per_class=20, test_per_class=1)
    cfg = make_cfg(f"data={option}", f"data.root={tmp_path / 'files'}", tiny=False)
    node = OmegaConf.to_container(cfg.data)
    assert isinstance(node, dict) and node.pop("_target_") == f"imbsweep.data.{cls.__name__}"
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    assert {k: v for k, v in node.items() if k != "root"} == {k: v for k, v in defaults.items() if k != "root"}
    assert (cfg.model._target_, cfg.model.arch, cfg.model.depth) == ("imbsweep.models.ResNet", "resnet32", 32)
    assert node["imbalance_ratio"] == 100 and node["download"] is False
    ds = D.load_dataset(OmegaConf.merge(cfg.data, {"imbalance_ratio": 2, "n_val_per_class": 2}), None)
    assert ds.name == option and len(ds.y_test) == len(ds.class_names)


def test_the_cli_says_where_the_files_go(tmp_path: Path) -> None:
    p = run_cli(tmp_path, "run", "data=cifar10_lt", "data.root=nowhere", "tracking.experiment=cifar_missing")
    assert p.returncode == 2, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("imbsweep:")]
    assert len(errors) == 1 and "Traceback" not in p.stderr, p.stderr
    assert errors[0].startswith(f"imbsweep: error: data.root='nowhere': no CIFAR-10 files in "
                                f"{tmp_path.resolve() / 'nowhere' / 'cifar-10-batches-py'}: extract")
    assert errors[0].endswith("or add data.download=true to let torchvision fetch it")
    assert runs(tmp_path, "cifar_missing") == []


def test_a_run_on_cifar10_lt_trains_its_natural_model_and_records_the_split(tmp_path: Path) -> None:
    import json

    make_cifar(tmp_path / "data", "CIFAR10", train_per_class=30, test_per_class=6)
    p = run_cli(tmp_path, "run", "data=cifar10_lt", "data.imbalance_ratio=10", "data.n_val_per_class=4",
                "trainer.epochs=1", "tracking.experiment=cifar")
    assert p.returncode == 0, p.stderr
    (run,) = runs(tmp_path, "cifar")
    params, metrics = run.data.params, run.data.metrics
    assert params["model._target_"] == "imbsweep.models.ResNet" and params["model.arch"] == "resnet32"
    assert params["data.root"] == str((tmp_path / "data").resolve())  # the default root, recorded absolute
    assert run.inputs is not None
    (data,) = run.inputs.dataset_inputs
    assert data.dataset.name == "cifar10_lt-r10"
    assert data.dataset.profile is not None
    counts = json.loads(data.dataset.profile)["class_counts"]
    assert [counts[n] for n in ("airplane", "truck")] == [[26, 4, 6], [3, 4, 6]]  # 30 - 4 for the head; int(30 / 10)
    assert {"test/balanced_acc", "val/balanced_acc", "test/recall/airplane", "test/acc_few"} <= set(metrics)
