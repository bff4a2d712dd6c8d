"""Image folders: torchvision's ImageFolder layout (one subfolder per class) or a CSV of image
paths and labels, decoded once, resized and normalised with torchvision transforms, then
cached like every dataset; random crop + flip at training time."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from ..constraints import BOOLEAN, FRACTION, NULL, SEED, TEXT, Constraint, Interval, Options, fields_of, validate
from ..errors import ConfigError, DataError
from ._dataset import Dataset
from ._longtail import PROFILES, balanced_holdout, longtail_counts, longtail_subsample, stratified_split
from ._tabular import _labels

log = logging.getLogger(__name__)

HOLDOUTS = ("balanced", "stratified")
_SHIM: list[Any] = []  # keeps the torch.library fragment below alive


def import_torchvision() -> ModuleType:
    """``import torchvision``, also beside a torch whose build its compiled ops do not match.

    PyPI's torchvision 0.28.0 for x86-64 Linux is built against CUDA torch; beside the CPU
    wheel of torch 2.13.0 its C++ extension (``torchvision::nms`` and the other detection
    ops) cannot load (it needs libtorch_cuda). torchvision then still imports all its Python
    parts, except that ``_meta_registrations`` registers fake kernels for ``nms`` and ``qnms``
    without checking that the ops exist, and the import fails ("operator torchvision::nms
    does not exist"). When the extension cannot load, those two schemas are declared here
    first: transforms, models and datasets work (they are pure Python); the detection ops
    still raise torchvision's own "Couldn't load custom C++ ops" error when called. Where
    the extension loads (a CUDA machine), nothing is declared.
    """
    import sys

    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("data", "image_folder", "needs torchvision: pip install torchvision==0.28.0 "
                                                  "(the release built for torch 2.13.0; make venv installs it)")
    pkg = Path(next(iter(spec.submodule_search_locations)))
    ext = next(iter(pkg.glob("_C*.so")), None) or next(iter(pkg.glob("_C*.pyd")), None)
    loaded = False
    if ext is not None:
        try:
            torch.ops.load_library(str(ext))
            loaded = True
        except (OSError, RuntimeError):
            loaded = False
    if not loaded and not hasattr(torch.ops.torchvision, "nms"):
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _SHIM.append(lib)
        log.debug("torchvision's C++ ops do not load beside torch %s; using its Python parts", torch.__version__)
    import torchvision

    return torchvision


@dataclass
class ImageFolder:
    """A folder of images, one subfolder per class (``path/<class>/<image>``, torchvision's
    ``ImageFolder`` layout; classes in sorted order), or a CSV with a column of image paths
    (``path_column``, relative to the CSV's folder) and a label column (``target``).

    Each image is decoded once (Pillow, ``channels`` 3 = RGB, 1 = grayscale), resized so its
    short side is ``image_size`` and centre-cropped to a square (torchvision's ``Resize`` and
    ``CenterCrop``), then normalised per channel with the training split's mean and std.

    Splits: ``holdout: balanced`` holds out ``n_val_per_class`` and ``n_test_per_class`` of
    every class first (as for MNIST-1D); ``stratified`` keeps the folder's class distribution
    in every split (``val_fraction``, ``test_fraction``). ``imbalance_ratio`` then subsamples
    the training split to a long tail, head = class 0 (``n_train_max``: its count; null = as
    many as the pools allow). Training-time augmentation (never cached):
    ``random_crop_padding`` (pad by that many pixels, then crop back at random; 0 = off) and
    ``random_flip`` (horizontal, half of the time).
    """

    path: str = "???"
    path_column: str = "path"
    target: str = "label"
    image_size: int = 32
    channels: int = 3
    holdout: str = "balanced"
    n_val_per_class: int = 10
    n_test_per_class: int = 20
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    imbalance_ratio: float | None = None
    profile: str = "exp"
    n_train_max: int | None = None
    random_crop_padding: int = 4
    random_flip: bool = True
    seed: int = 0
    name: ClassVar[str] = "image_folder"
    _root: Path = field(init=False, repr=False)
    _parameter_constraints: ClassVar[Mapping[str, Sequence[Constraint]]] = {
        "path": [TEXT], "path_column": [TEXT], "target": [TEXT], "image_size": [Interval(int, 4, None)],
        "channels": [Options(1, 3)], "holdout": [Options(*HOLDOUTS)], "n_val_per_class": [Interval(int, 1, None)],
        "n_test_per_class": [Interval(int, 1, None)], "val_fraction": [FRACTION], "test_fraction": [FRACTION],
        "imbalance_ratio": [Interval(float, 1, None), NULL], "profile": [Options(*PROFILES)],
        "n_train_max": [Interval(int, 1, None), NULL], "random_crop_padding": [Interval(int, 0, None)],
        "random_flip": [BOOLEAN], "seed": [SEED]}

    def __post_init__(self) -> None:
        validate(type(self), fields_of(self), "data")
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("data.test_fraction", self.test_fraction, "val_fraction + test_fraction must be < 1")
        self._root = Path(self.path).expanduser()
        if not self._root.exists():
            raise DataError("data.path", self.path, f"no such folder or CSV file (looked in {Path.cwd()})")
        if self._root.is_file() and self._root.suffix.lower() != ".csv":
            raise DataError("data.path", self.path, "must be a folder of class subfolders or a .csv file")

    # -- what identifies it ----------------------------------------------------------------------
    def _listing(self) -> tuple[list[Path], list[str], list[str]]:
        """Every image file, its label, and the class names in order."""
        if self._root.is_dir():
            folder = import_torchvision().datasets.folder
            try:
                classes, to_idx = folder.find_classes(str(self._root))
                samples = folder.make_dataset(str(self._root), to_idx, extensions=folder.IMG_EXTENSIONS)
            except FileNotFoundError as exc:
                raise DataError("data.path", self.path, f"not an image folder: {exc}") from None
            return [Path(p) for p, _ in samples], [classes[c] for _, c in samples], list(classes)
        import pandas as pd

        df = pd.read_csv(self._root)
        for key in ("path_column", "target"):
            if getattr(self, key) not in df.columns:
                raise DataError(f"data.{key}", getattr(self, key),
                                f"no such column in {self.path}; columns are: {', '.join(map(str, df.columns))}")
        df = df[df[self.path_column].notna() & df[self.target].notna()]
        paths = [(self._root.parent / str(p)).resolve() for p in df[self.path_column]]
        absent = [str(p) for p in paths if not p.is_file()]
        if absent:
            raise DataError("data.path", self.path, f"{len(absent)} image file(s) listed but not found, "
                                                    f"e.g. {absent[0]}")
        names, y = _labels(df[self.target])
        return paths, [str(names[i]) for i in y], [str(n) for n in names]

    def spec(self) -> dict[str, Any]:
        """Config plus a fingerprint of the files (names, sizes, times): a changed folder is rebuilt.
        Augmentation is applied at training time, so it is not part of the cached dataset."""
        paths, labels, _ = self._listing()
        h = hashlib.sha256()
        for p, label in zip(paths, labels, strict=True):
            st = os.stat(p)
            h.update(f"{p}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        if self._root.is_file():
            st = os.stat(self._root)
            h.update(f"{st.st_size}\0{st.st_mtime_ns}".encode())
        skip = ("random_crop_padding", "random_flip")
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init and f.name not in skip}
        return {"name": self.name, **fields, "root": str(self._root.resolve()), "files": h.hexdigest()}

    # -- build -----------------------------------------------------------------------------------
    def build(self) -> Dataset:
        from PIL import Image, UnidentifiedImageError

        import_torchvision()
        from torchvision.transforms import v2

        paths, labels, names = self._listing()
        if not paths:
            raise DataError("data.path", self.path, "holds no image")
        if len(set(labels)) < 2:
            raise DataError("data.path", self.path, f"holds images of one class only ({labels[0]!r}); a classifier "
                                                    "needs at least 2 (one subfolder per class)")
        index = {n: i for i, n in enumerate(names)}
        y = np.array([index[label] for label in labels], dtype=np.int64)
        resize = v2.Compose([v2.Resize(self.image_size, antialias=True), v2.CenterCrop(self.image_size),
                             v2.PILToTensor()])
        mode = "RGB" if self.channels == 3 else "L"
        digest = hashlib.sha256()
        if self._root.is_file():
            digest.update(self._root.read_bytes())
        images = np.empty((len(paths), self.channels, self.image_size, self.image_size), dtype=np.uint8)
        base = self._root if self._root.is_dir() else self._root.parent
        log.info("decoding %d images from %s (once; then cached)", len(paths), self.path)
        for i, p in enumerate(paths):
            raw = p.read_bytes()
            digest.update(f"{os.path.relpath(p, base)}\0{labels[i]}\0".encode())
            digest.update(hashlib.sha256(raw).digest())
            try:
                with Image.open(io.BytesIO(raw)) as img:
                    images[i] = resize(img.convert(mode)).numpy()
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError("data.path", self.path, f"cannot decode {p}: {exc}") from None
        rng = np.random.default_rng(self.seed)
        train, val, test = self._split(y, len(names), rng)
        (xtr, xva, xte), mean, std = normalised_splits(images, [train, val, test])
        shape = (self.channels, self.image_size, self.image_size)
        meta = {"source": str(self._root.resolve()), "digest": digest.hexdigest()[:16],
                "format": "csv" if self._root.is_file() else "folder", "image_shape": list(shape),
                "normalize": {"mean": [round(m, 6) for m in mean], "std": [round(s, 6) for s in std]},
                "files": len(paths), "warnings": []}
        return Dataset(self.name, xtr, y[train], xva, y[val], xte, y[test],
                       tuple(names), kind="image", image_shape=shape, meta=meta)

    def _split(self, y: np.ndarray, n_classes: int, rng: np.random.Generator,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.holdout == "stratified":
            train, val, test = stratified_split(y, self.val_fraction, self.test_fraction, rng)
            if self.imbalance_ratio is not None:
                train = longtail_subsample(train, y, float(self.imbalance_ratio), self.profile, rng,
                                           head_first=False)
            return train, val, test
        sizes = np.bincount(y, minlength=n_classes)
        need = self.n_val_per_class + self.n_test_per_class + 1
        if sizes.min() < need:
            raise DataError("data.n_val_per_class", self.n_val_per_class,
                            f"class {int(sizes.argmin())} has {int(sizes.min())} images; a balanced holdout needs "
                            f"n_val_per_class + n_test_per_class + 1 = {need}: lower them, or "
                            "data.holdout=stratified")
        val, test, pool = balanced_holdout(y, self.n_val_per_class, self.n_test_per_class, rng)
        if self.imbalance_ratio is None:
            return rng.permutation(np.concatenate(pool)), val, test
        frac = longtail_counts(10**9, n_classes, float(self.imbalance_ratio), self.profile, warn=False) / 10**9
        room = int(min(len(p) / f for p, f in zip(pool, frac, strict=True)))
        n_max = self.n_train_max or room
        counts = longtail_counts(n_max, n_classes, float(self.imbalance_ratio), self.profile)
        short = [c for c in range(n_classes) if len(pool[c]) < counts[c]]
        if short:
            c = short[0]
            raise DataError("data.n_train_max", self.n_train_max,
                            f"class {c} has {len(pool[c])} training images, {int(counts[c])} asked for; "
                            f"at most {room} fits this folder (null picks it)")
        train = np.concatenate([p[:n] for p, n in zip(pool, counts, strict=True)])
        return rng.permutation(train), val, test


def normalised_splits(images: np.ndarray, splits: list[np.ndarray],
                      ) -> tuple[list[np.ndarray], list[float], list[float]]:
    """The images of each split, as float32 normalised per channel with the first split's
    (training's) mean and std (torchvision's ``ToDtype(scale=True)`` and ``Normalize``).

    Args:
        images: uint8 ``[N, C, H, W]``.
        splits: index arrays into ``images``, training first.

    Returns:
        (one float32 array per split, the mean, the std), a std of 0 taken as 1.
    """
    import torch

    import_torchvision()
    from torchvision.transforms import v2

    x = torch.from_numpy(images)
    scaled = x[torch.from_numpy(splits[0])].to(torch.float32) / 255
    mean = scaled.mean(dim=(0, 2, 3)).tolist()
    std = [s or 1.0 for s in scaled.std(dim=(0, 2, 3)).tolist()]
    del scaled
    norm = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])

    def part(idx: np.ndarray) -> np.ndarray:
        return norm(x[torch.from_numpy(idx)]).numpy() if len(idx) else np.zeros((0, *x.shape[1:]), np.float32)

    return [part(idx) for idx in splits], mean, std


class Augment:
    """Random crop with padding and horizontal flip, per example, on a batch ``[B, C, H, W]``
    on any device: what torchvision's ``RandomCrop(size, padding)`` and
    ``RandomHorizontalFlip()`` do to one image, done for the whole batch at once (a v2
    transform given a batch draws one crop for all of it). The padding is the value black
    takes after normalisation, as padding the raw image with zeros would give. Offsets and
    flips come from a CPU generator seeded with ``trainer.seed``, so runs repeat exactly.

    Args:
        padding: pixels added on each side before cropping back (0: no crop).
        flip: flip half of the images left to right.
        fill: per-channel padding value.
        seed: the generator's seed.
    """

    def __init__(self, padding: int, flip: bool, fill: list[float], seed: int) -> None:
        import torch

        self.padding, self.flip = int(padding), bool(flip)
        self.fill = torch.tensor(fill, dtype=torch.float32)
        self.gen = torch.Generator().manual_seed(int(seed) + 7919)  # apart from the batch order's stream

    def __call__(self, x: Any) -> Any:
        import torch

        b, c, h, w = x.shape
        p = self.padding
        if p:
            i = torch.randint(0, 2 * p + 1, (b,), generator=self.gen).to(x.device)
            j = torch.randint(0, 2 * p + 1, (b,), generator=self.gen).to(x.device)
            padded = self.fill.to(x.device, x.dtype).view(1, c, 1, 1).repeat(b, 1, h + 2 * p, w + 2 * p)
            padded[:, :, p:p + h, p:p + w] = x
            rows = (i[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (j[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            x = padded[torch.arange(b, device=x.device)[:, None, None, None],
                       torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
        if self.flip:
            mask = (torch.rand(b, generator=self.gen) < 0.5).to(x.device)
            x = torch.where(mask[:, None, None, None], x.flip(3), x)
        return x


def image_augment(data_cfg: Any, ds: Dataset, seed: int) -> Augment | None:
    """The training-time augmentation ``data_cfg`` asks for (image data only; None: none)."""
    if ds.kind != "image" or ds.x_train.ndim != 4:
        return None
    padding = int(data_cfg.get("random_crop_padding", 0) or 0)
    flip = bool(data_cfg.get("random_flip", False))
    if not padding and not flip:
        return None
    norm = ds.meta.get("normalize") or {}
    mean, std = norm.get("mean", [0.0] * ds.x_train.shape[1]), norm.get("std", [1.0] * ds.x_train.shape[1])
    return Augment(padding, flip, [-m / s for m, s in zip(mean, std, strict=True)], seed)
