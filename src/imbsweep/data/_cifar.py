"""CIFAR-10-LT and CIFAR-100-LT, the long-tail papers' benchmarks (Cui et al. 2019, Cao et al.
2019), read from torchvision's CIFAR files: the training images subsampled as LDAM-DRW's
``IMBALANCECIFAR10``/``IMBALANCECIFAR100`` subsample them, the original test set as test, and a
validation split taken from the training images the long tail leaves out."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import pickle
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ..constraints import BOOLEAN, TEXT, Constraint, Interval, Options, fields_of, validate
from ..errors import ConfigError, DataError, one_line
from ._dataset import Dataset
from ._images import import_torchvision, normalised_splits

log = logging.getLogger(__name__)
CIFAR_PROFILES = ("exp", "step")
_CIFAR_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"


class Layout(NamedTuple):
    """Where torchvision keeps one CIFAR set under its ``root``, and what the files hold (the
    attributes of ``torchvision.datasets.CIFAR10``/``CIFAR100``; a test checks they agree)."""

    base_folder: str
    archive: str
    train: tuple[tuple[str, str], ...]  # (file, md5)
    test: tuple[tuple[str, str], ...]
    meta: tuple[str, str]  # (file, md5)
    names_key: str  # the class names in the meta file
    labels_key: str  # the labels in a batch file


LAYOUTS = {
    "CIFAR10": Layout(
        "cifar-10-batches-py", "cifar-10-python.tar.gz",
        (("data_batch_1", "c99cafc152244af753f735de768cd75f"), ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
         ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"), ("data_batch_4", "634d18415352ddfa80567beed471001a"),
         ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb")),
        (("test_batch", "40351d587109b95175f43aff81a1287e"),),
        ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"), "label_names", "labels"),
    "CIFAR100": Layout(
        "cifar-100-python", "cifar-100-python.tar.gz",
        (("train", "16019d7e3df5f24257cddd939b257f8d"),), (("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),),
        ("meta", "7973b15100ade9c7d40fb424638fde48"), "fine_label_names", "fine_labels"),
}


def cifar_lt_counts(n_max: float, n_classes: int, imbalance_ratio: float, profile: str = "exp") -> list[int]:
    """Training images per class, head (class 0) to tail, exactly as LDAM-DRW's
    ``get_img_num_per_cls`` computes them (and so as the papers' tables list them):
    ``int(n_max * (1 / ratio) ** (i / (C - 1)))`` for ``exp``; for ``step``, the first half of
    the classes keep ``int(n_max)``, the rest ``int(n_max / ratio)``.

    Args:
        n_max: images per class in the training file (LDAM-DRW: ``len(data) / C``; 5000 for
            CIFAR-10, 500 for CIFAR-100).
        n_classes: C.
        imbalance_ratio: ``n_max / n_min`` (LDAM-DRW's ``1 / imb_factor``).
        profile: ``exp`` or ``step``.

    Example:
        >>> cifar_lt_counts(5000, 10, 100)
        [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    """
    if profile not in CIFAR_PROFILES:
        raise ConfigError("data.profile", profile, f"must be one of {', '.join(CIFAR_PROFILES)}")
    factor = 1.0 / imbalance_ratio
    if profile == "exp":
        return [int(n_max * factor ** (i / (n_classes - 1.0))) for i in range(n_classes)]
    half = n_classes // 2
    return [int(n_max)] * half + [int(n_max * factor)] * (n_classes - half)


def ldam_order(y: np.ndarray, n_classes: int, seed: int) -> list[np.ndarray]:
    """Each class's indices into ``y`` (file order), shuffled as LDAM-DRW shuffles them: NumPy's
    legacy generator seeded with ``seed`` (its ``rand_number``), one ``shuffle`` per class in
    class order; the long tail keeps the first ``count`` of each. A generator of its own, so
    NumPy's global state is left alone."""
    rs = np.random.RandomState(seed)
    out = []
    for c in range(n_classes):
        idx = np.where(y == c)[0]
        rs.shuffle(idx)
        out.append(idx)
    return out


@dataclass
class CIFARLT:
    """A long-tailed CIFAR training split, LDAM-DRW's protocol, from torchvision's files.

    ``root`` holds torchvision's folder (``cifar-10-batches-py/`` or ``cifar-100-python/``);
    ``download: true`` lets torchvision fetch the archive there when a file is missing. Class
    ``i`` keeps :func:`cifar_lt_counts` training images, the first ones of its shuffled indices
    (:func:`ldam_order`, ``seed`` = LDAM-DRW's ``rand_number``): at ``seed=0``, the same images
    as LDAM-DRW. Test: the original test file, every image in file order. Validation:
    ``n_val_per_class`` images of each class from the training images the long tail leaves out
    (the next ones in that order), never from the test file. The head class is kept whole, so
    it has none left out: with ``exact_counts: false`` its validation images come out of its
    kept ones (it trains on ``n_max - n_val_per_class``); with ``true`` training is exactly the
    papers' table and validation holds what the long tail left out (no head class).
    Normalised per channel with the training split's mean and std; random crop and flip at
    training time (``random_crop_padding``, ``random_flip``; not cached).
    """

    root: str = "data"
    download: bool = False
    imbalance_ratio: float = 100.0
    profile: str = "exp"
    n_val_per_class: int = 50
    exact_counts: bool = False
    random_crop_padding: int = 4
    random_flip: bool = True
    seed: int = 0
    name: ClassVar[str] = "cifar_lt"
    torchvision_class: ClassVar[str] = "CIFAR10"
    title: ClassVar[str] = "CIFAR-10"
    _parameter_constraints: ClassVar[Mapping[str, Sequence[Constraint]]] = {
        "root": [TEXT], "download": [BOOLEAN], "imbalance_ratio": [Interval(float, 1, None)],
        "profile": [Options(*CIFAR_PROFILES)], "n_val_per_class": [Interval(int, 1, None)], "exact_counts": [BOOLEAN],
        "random_crop_padding": [Interval(int, 0, None)], "random_flip": [BOOLEAN],
        "seed": [Interval(int, 0, 2**32, "left")]}  # (NumPy's legacy generator takes [0, 2**32))

    def __post_init__(self) -> None:
        validate(type(self), fields_of(self), "data")
        if self.root == "???":
            raise ConfigError("data.root", self.root, "must be the folder that holds (or will hold) torchvision's "
                                                      "CIFAR folder")
        if not self.download:
            self._check_files()

    # -- the files -------------------------------------------------------------------------------
    @property
    def layout(self) -> Layout:
        return LAYOUTS[self.torchvision_class]

    @property
    def folder(self) -> Path:
        """torchvision's folder of this set under ``root``."""
        return Path(self.root).expanduser() / self.layout.base_folder

    def _files(self) -> list[str]:
        lay = self.layout
        return [f for f, _ in lay.train] + [f for f, _ in lay.test] + [lay.meta[0]]

    def _missing(self) -> list[str]:
        return [f for f in self._files() if not (self.folder / f).is_file()]

    def _check_files(self) -> None:
        """One line naming where the files go and the key that downloads them, if any is missing."""
        missing = self._missing()
        if not missing:
            return
        folder = self.folder.resolve()
        what = (f"no {self.title} files in {folder}" if len(missing) == len(self._files()) else
                f"{folder} lacks {', '.join(missing)}")
        raise DataError("data.root", self.root,
                        f"{what}: extract {self.layout.archive} ({_CIFAR_PAGE}) into {folder.parent} "
                        f"(torchvision's layout: {self.layout.base_folder}/{', '.join(self._files())}), "
                        "or add data.download=true to let torchvision fetch it")

    def _fetch(self) -> None:
        """``data.download=true``: torchvision downloads and extracts the archive (checking its
        MD5) when a file is missing; one process at a time per folder."""
        if not self._missing():
            return
        root = Path(self.root).expanduser()
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root / f".{self.layout.base_folder}.lock"):
            if not self._missing():  # another worker fetched it meanwhile
                return
            cls = getattr(import_torchvision().datasets, self.torchvision_class)
            log.info("data.download=true: fetching %s into %s (torchvision)", self.title, root)
            try:
                cls(str(root), train=True, download=True)
            except Exception as exc:  # noqa: BLE001 - offline, refused, a bad archive: one line
                raise DataError("data.download", True,
                                f"torchvision could not fetch {self.title} into {root}: {one_line(exc, 300)}; "
                                f"put the extracted {self.layout.archive} there instead") from None
        self._check_files()

    def spec(self) -> dict[str, Any]:
        """Config plus a fingerprint of the files (names, sizes, times): changed files are rebuilt.
        ``download`` and the augmentation do not change the dataset, so they are left out."""
        if self.download:
            self._fetch()
        h = hashlib.sha256()
        for f in self._files():
            st = os.stat(self.folder / f)
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        skip = ("download", "random_crop_padding", "random_flip")
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        return {"name": self.name, **fields, "root": str(self.folder.resolve()), "files": h.hexdigest()}

    # -- build -----------------------------------------------------------------------------------
    def build(self) -> Dataset:
        if self.download:
            self._fetch()
        self._check_files()
        lay = self.layout
        digest, official = hashlib.sha256(), True
        raw: dict[str, bytes] = {}
        for f, md5 in (*lay.train, *lay.test, lay.meta):
            raw[f] = (self.folder / f).read_bytes()
            digest.update(f"{f}\0".encode())
            digest.update(hashlib.sha256(raw[f]).digest())
            official = official and hashlib.md5(raw[f], usedforsecurity=False).hexdigest() == md5
        names = self._names(raw[lay.meta[0]])
        x_tr, y_tr = self._batches(raw, [f for f, _ in lay.train], len(names))
        x_te, y_te = self._batches(raw, [f for f, _ in lay.test], len(names))
        train, val = self._split(y_tr, names)
        # the split settings go into the digest too: a study at another ratio is another dataset
        digest.update(repr([self.imbalance_ratio, self.profile, self.n_val_per_class, self.exact_counts,
                            self.seed]).encode())
        n_files = len(raw)
        del raw
        x = np.concatenate([x_tr, x_te])
        del x_tr
        test = np.arange(len(y_tr), len(x))  # the whole test file, in its order
        (xtr, xva, xte), mean, std = normalised_splits(x, [train, val, test])
        y = np.concatenate([y_tr, y_te])
        meta = {"source": str(self.folder.resolve()), "digest": digest.hexdigest()[:16], "format": "cifar",
                "display_name": f"{self.name}-r{self.imbalance_ratio:g}", "image_shape": [3, 32, 32],
                "normalize": {"mean": [round(m, 6) for m in mean], "std": [round(s, 6) for s in std]},
                "files": n_files, "official_files": official, "warnings": []}
        return Dataset(self.name, xtr, y[train], xva, y[val], xte, y[test], tuple(names), kind="image",
                       image_shape=(3, 32, 32), meta=meta)

    def _names(self, raw: bytes) -> list[str]:
        key = self.layout.names_key
        entry = self._unpickle(raw, self.layout.meta[0])
        if key not in entry:
            raise DataError("data.root", self.root, f"{self.folder / self.layout.meta[0]} has no {key!r}: "
                                                    f"not {self.title}'s meta file")
        return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in entry[key]]

    def _batches(self, raw: dict[str, bytes], files: list[str], n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """The images ``[N, 3, 32, 32]`` uint8 and labels of batch files, concatenated in order
        (what torchvision's ``CIFAR10`` reads after its integrity check)."""
        xs, ys = [], []
        for f in files:
            entry = self._unpickle(raw[f], f)
            key = self.layout.labels_key
            data = np.asarray(entry.get("data"))
            labels = np.asarray(entry.get(key, []), dtype=np.int64)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
                raise DataError("data.root", self.root,
                                f"{self.folder / f} is not a {self.title} batch: 'data' must be uint8 [N, 3072] "
                                f"with N {key!r}, got {data.dtype} {list(data.shape)} and {len(labels)} labels")
            if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
                raise DataError("data.root", self.root, f"{self.folder / f}: labels outside 0..{n_classes - 1}")
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(labels)
        return np.concatenate(xs), np.concatenate(ys)

    def _unpickle(self, raw: bytes, f: str) -> dict[str, Any]:
        try:
            entry = pickle.loads(raw, encoding="latin1")  # noqa: S301 - CIFAR's own format, as torchvision reads it
        except Exception as exc:  # noqa: BLE001 - any unreadable file: one line
            raise DataError("data.root", self.root, f"cannot read {self.folder / f}: {one_line(exc, 200)}") from None
        if not isinstance(entry, dict):
            raise DataError("data.root", self.root, f"{self.folder / f} is not a CIFAR pickle (a dict)")
        # Python 2's str keys read as str with latin1; files written with bytes keys read as bytes
        return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in entry.items()}

    def _split(self, y: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Training (LDAM-DRW's long tail) and validation indices into the training file."""
        n_classes = len(names)
        if len(set(y.tolist())) != n_classes:
            raise DataError("data.root", self.root, f"the training file holds {len(set(y.tolist()))} classes, "
                                                    f"{n_classes} named in {self.layout.meta[0]}")
        n_max = len(y) / n_classes  # as LDAM-DRW: len(data) / cls_num
        counts = cifar_lt_counts(n_max, n_classes, float(self.imbalance_ratio), self.profile)
        if min(counts) < 1:
            raise ConfigError("data.imbalance_ratio", self.imbalance_ratio,
                              f"leaves class {counts.index(min(counts))} with no training image ({self.title} has "
                              f"{n_max:g} per class): use a smaller ratio")
        v, train, val = self.n_val_per_class, [], []
        for c, idx in enumerate(ldam_order(y, n_classes, self.seed)):
            n = counts[c]
            if len(idx) < n:
                raise DataError("data.root", self.root, f"class {c} ({names[c]}) has {len(idx)} training images, "
                                                        f"{n} asked for by the long tail")
            kept, left = idx[:n], idx[n:n + v]
            short = v - len(left)
            if short and not self.exact_counts:
                if short >= n:
                    raise ConfigError("data.n_val_per_class", v, f"class {c} ({names[c]}) keeps {n} training "
                                                                 f"images and has {len(left)} left out: too few")
                log.info("%s: class %r keeps %d of its %d training images in the long tail; %d of its %d validation "
                         "images come out of the kept ones, so it trains on %d (data.exact_counts=true: on %d, with "
                         "%d validation images)", self.name, names[c], n, len(idx), short, v, n - short, n, v - short)
                kept, left = idx[:n - short], np.concatenate([left, idx[n - short:n]])
            train.append(kept)
            val.append(left)
        if not sum(len(v_) for v_ in val):
            raise ConfigError("data.exact_counts", True, f"at imbalance_ratio={self.imbalance_ratio:g} the long tail "
                                                         "leaves no training image out, so validation would be empty: "
                                                         "use data.exact_counts=false")
        return np.concatenate(train), np.concatenate(val)


@dataclass
class CIFAR10LT(CIFARLT):
    """CIFAR-10-LT: 5000 training images per class before the long tail; 50 of each class
    for validation by default (500 images)."""

    name: ClassVar[str] = "cifar10_lt"


@dataclass
class CIFAR100LT(CIFARLT):
    """CIFAR-100-LT (the 100 fine labels): 500 training images per class before the long tail;
    10 of each class for validation by default (1000 images)."""

    n_val_per_class: int = 10
    name: ClassVar[str] = "cifar100_lt"
    torchvision_class: ClassVar[str] = "CIFAR100"
    title: ClassVar[str] = "CIFAR-100"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if needed) while the block runs."""
    import fcntl

    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
