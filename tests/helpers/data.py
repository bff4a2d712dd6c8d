"""Data files a test trains on: a messy table (and how to write one), a tiny image folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def messy_table(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """String labels (two collide when sanitised, one has a '/', one has 2 rows), a categorical
    with NaN, a numeric with NaN, an integer id, a string id, dates and free text."""
    rng = np.random.default_rng(seed)
    label = rng.choice(["<4.8kg", ">4.8kg", "teacher/nurse"], n, p=[0.6, 0.3, 0.1]).astype(object)
    label[:2] = "rare"
    x = rng.normal(size=n) + (label == ">4.8kg") * 2.0
    x[3] = np.nan
    return pd.DataFrame({
        "row_id": np.arange(n), "uid": [f"u{i:04d}" for i in range(n)],
        "when": pd.date_range("2021-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "note": [f"free text number {i % 80}" for i in range(n)],
        "x": x, "island": rng.choice(np.array(["Biscoe", "Dream", None], dtype=object), n), "label": label,
    })


def write_table(df: pd.DataFrame, path: Path) -> str:
    """``df`` written to ``path`` as CSV or Parquet (by its suffix); the path as text."""
    df.to_csv(path, index=False) if path.suffix == ".csv" else df.to_parquet(path)
    return str(path)


def make_pngs(root: Path, counts: dict[str, int], size: tuple[int, int] = (10, 12), seed: int = 0) -> Path:
    """A tiny ImageFolder: class c's images are noise with channel ``index(c) % 3`` bright."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k, (c, n) in enumerate(counts.items()):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = rng.integers(0, 120, (*size, 3), dtype=np.uint8)
            a[..., k % 3] = 230
            Image.fromarray(a).save(root / c / f"{i:03d}.png")
    return root


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_id(images: np.ndarray) -> np.ndarray:
    """The id :func:`make_cifar` wrote into each image (uint8 ``[N, 3, 32, 32]``): the first three
    pixels of the red channel, big-endian."""
    first = images[:, 0, 0, :3].astype(np.int64)
    return (first[:, 0] << 16) | (first[:, 1] << 8) | first[:, 2]


def make_cifar(root: Path, which: str = "CIFAR10", train_per_class: int = 60, test_per_class: int = 8,
               seed: int = 0) -> dict[str, np.ndarray]:
    """Tiny CIFAR files in torchvision's layout and CIFAR's own pickle format (dicts with bytes
    keys, ``b'data'`` uint8 ``[N, 3072]`` row-major CHW, ``b'labels'`` / ``b'fine_labels'`` as
    lists, the meta file's class names as bytes): CIFAR-10's five training batches, its test
    batch and ``batches.meta``; CIFAR-100's ``train``, ``test`` and ``meta``. Labels come in a
    shuffled order, as in the real files. Every image is unique: :func:`cifar_id` reads its id
    (training images 0.., test images 1,000,000..); channel ``class % 3`` is bright.

    Returns:
        What was written, in file order: ``train_ids``, ``train_labels``, ``test_ids``,
        ``test_labels``, ``test_images`` (uint8 ``[N, 3, 32, 32]``).
    """
    import pickle

    rng = np.random.default_rng(seed)
    ten = which == "CIFAR10"
    names = CIFAR10_NAMES if ten else [f"fine_{i:02d}" for i in range(100)]
    label_key = b"labels" if ten else b"fine_labels"

    def images(labels: np.ndarray, first_id: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.integers(0, 120, (len(labels), 3, 32, 32), dtype=np.uint8)
        x[np.arange(len(labels)), labels % 3] = 230
        ids = first_id + np.arange(len(labels))
        x[:, 0, 0, 0], x[:, 0, 0, 1], x[:, 0, 0, 2] = ids >> 16, (ids >> 8) & 255, ids & 255
        return x, ids

    def dump(name: str, entry: dict[bytes, object]) -> None:
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)

    y_train = rng.permutation(np.repeat(np.arange(len(names)), train_per_class))
    y_test = rng.permutation(np.repeat(np.arange(len(names)), test_per_class))
    x_train, train_ids = images(y_train, 0)
    x_test, test_ids = images(y_test, 1_000_000)
    folder = root / ("cifar-10-batches-py" if ten else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    parts = np.array_split(np.arange(len(y_train)), 5) if ten else [np.arange(len(y_train))]
    for k, part in enumerate(parts):
        dump(f"data_batch_{k + 1}" if ten else "train",
             {b"batch_label": b"training batch", label_key: y_train[part].tolist(),
              b"data": x_train[part].reshape(len(part), -1), b"filenames": [b"x.png"] * len(part)})
    dump("test_batch" if ten else "test", {b"batch_label": b"testing batch", label_key: y_test.tolist(),
                                           b"data": x_test.reshape(len(y_test), -1)})
    if ten:
        dump("batches.meta", {b"num_cases_per_batch": 10000, b"label_names": [n.encode() for n in names],
                              b"num_vis": 3072})
    else:
        dump("meta", {b"fine_label_names": [n.encode() for n in names],
                      b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)]})
    return {"train_ids": train_ids, "train_labels": y_train, "test_ids": test_ids, "test_labels": y_test,
            "test_images": x_test}
