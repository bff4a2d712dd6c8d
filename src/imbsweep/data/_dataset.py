"""The in-memory dataset every source produces, and its two-level cache."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: bump when the way datasets are built changes, so stale disk caches are not reused
CACHE_VERSION = 1
_MEMORY: dict[str, Dataset] = {}


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/val/test arrays, float32 features and int64 labels ``0..C-1``."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_features(self) -> int:
        return int(np.prod(self.x_train.shape[1:]))

    @property
    def train_class_counts(self) -> np.ndarray:
        """Training examples per class (int64, length C)."""
        return np.bincount(self.y_train, minlength=self.n_classes).astype(np.int64)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # write then rename, so concurrent workers never read a half-written file
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
        os.close(fd)
        np.savez(tmp, name=np.array(self.name), class_names=np.array(self.class_names),
                 **{k: getattr(self, k) for k in _ARRAYS})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Dataset:
        with np.load(path, allow_pickle=False) as z:
            return cls(name=str(z["name"]), class_names=tuple(str(c) for c in z["class_names"]),
                       **{k: z[k] for k in _ARRAYS})


_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def cache_key(spec: dict[str, Any]) -> str:
    """Stable hash of a dataset spec (its resolved config plus anything else that matters)."""
    blob = json.dumps({"v": CACHE_VERSION, **spec}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached(spec: dict[str, Any], build: Callable[[], Dataset], cache_dir: Path | None) -> Dataset:
    """Return the dataset for ``spec`` from memory, then disk, else build and store it."""
    key = cache_key(spec)
    if key in _MEMORY:
        return _MEMORY[key]
    path = None if cache_dir is None else Path(cache_dir) / f"{spec.get('name', 'data')}-{key}.npz"
    if path is not None and path.exists():
        try:
            ds = Dataset.load(path)
        except (OSError, ValueError, KeyError) as exc:  # corrupt file: rebuild it
            log.warning("ignoring unreadable dataset cache %s (%s)", path, exc)
        else:
            _MEMORY[key] = ds
            return ds
    ds = build()
    if path is not None:
        ds.save(path)
        log.info("dataset %s cached at %s", ds.name, path)
    _MEMORY[key] = ds
    return ds


def clear_memory_cache() -> None:
    """Forget the per-process cache (tests use it to force a disk read)."""
    _MEMORY.clear()
