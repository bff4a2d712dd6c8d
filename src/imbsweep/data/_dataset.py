"""The in-memory dataset every source produces, and its two-level cache (bounded on disk)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: bump when the way datasets are built changes, so stale disk caches are not reused
CACHE_VERSION = 2
#: the disk cache's default bound (config key ``dataset_cache_mb``)
DEFAULT_CACHE_MB = 2048.0
#: what kind of input a dataset holds; a model says which kinds it takes
KINDS = ("sequence", "vector", "tabular", "image")
_MEMORY: dict[str, Dataset] = {}


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/val/test arrays, float32 features and int64 labels ``0..C-1``.

    Attributes:
        kind: one of :data:`KINDS` (``image``: ``x`` is ``[N, C, H, W]``, or flat with
            ``image_shape`` saying how to see it as an image).
        image_shape: ``(C, H, W)`` of image data, else None.
        meta: JSON-able facts about what was built (source, digest, columns used and
            dropped, the warnings the build raised), recorded with every run.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    kind: str = "vector"
    image_shape: tuple[int, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

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

    def class_counts(self) -> dict[str, list[int]]:
        """Examples per class in each split: ``{"train": [...], "val": [...], "test": [...]}``."""
        return {s: np.bincount(getattr(self, f"y_{s}"), minlength=self.n_classes).astype(int).tolist()
                for s in ("train", "val", "test")}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # write then rename, so concurrent workers never read a half-written file
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
        os.close(fd)
        info = {"kind": self.kind, "image_shape": self.image_shape, "meta": self.meta}
        np.savez(tmp, name=np.array(self.name), class_names=np.array(self.class_names, dtype=str),
                 info=np.array(json.dumps(info)), **{k: getattr(self, k) for k in _ARRAYS})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Dataset:
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["info"]))
            shape = info.get("image_shape")
            return cls(name=str(z["name"]), class_names=tuple(str(c) for c in z["class_names"]),
                       kind=str(info["kind"]), image_shape=tuple(shape) if shape else None,
                       meta=dict(info.get("meta") or {}), **{k: z[k] for k in _ARRAYS})


_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def cache_key(spec: dict[str, Any]) -> str:
    """Stable hash of a dataset spec (its resolved config plus anything else that matters)."""
    blob = json.dumps({"v": CACHE_VERSION, **spec}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def spec_digest(spec: dict[str, Any]) -> str:
    """A digest of what generated a dataset (its spec, without the cache's version): the
    dataset record's digest for data generated offline."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached(spec: dict[str, Any], build: Callable[[], Dataset], cache_dir: Path | None,
           max_mb: float | None = DEFAULT_CACHE_MB) -> Dataset:
    """Return the dataset for ``spec`` from memory, then disk, else build and store it.

    The disk cache is bounded: after a new file is written, the least recently used files
    (a read counts as a use) are deleted until the folder holds at most ``max_mb``
    megabytes (None: unbounded). The file just written is always kept.
    """
    key = cache_key(spec)
    if key in _MEMORY:
        return _MEMORY[key]
    path = None if cache_dir is None else Path(cache_dir) / f"{spec.get('name', 'data')}-{key}.npz"
    if path is not None and path.exists():
        try:
            ds = Dataset.load(path)
            os.utime(path)  # its last use, for the least-recently-used bound
        except (OSError, ValueError, KeyError) as exc:  # corrupt or evicted meanwhile: rebuild it
            log.warning("ignoring unreadable dataset cache %s (%s)", path, exc)
        else:
            _MEMORY[key] = ds
            return ds
    ds = build()
    if path is not None:
        ds.save(path)
        log.info("dataset %s cached at %s", ds.name, path)
        if max_mb is not None:
            evict(path.parent, max_mb, keep=path)
    _MEMORY[key] = ds
    return ds


@dataclass(frozen=True)
class CacheEntry:
    """One file of the disk cache."""

    path: Path
    size: int
    last_used: float


def cache_entries(cache_dir: Path) -> list[CacheEntry]:
    """The cache's files, least recently used first."""
    out = []
    for p in Path(cache_dir).glob("*.npz"):
        if p.name.endswith(".tmp.npz"):
            continue
        try:
            st = p.stat()
        except OSError:  # deleted meanwhile by another process
            continue
        out.append(CacheEntry(p, st.st_size, st.st_mtime))
    return sorted(out, key=lambda e: (e.last_used, e.path.name))


def evict(cache_dir: Path, max_mb: float, keep: Path | None = None) -> list[Path]:
    """Delete the least recently used files until the cache holds at most ``max_mb`` MB
    (``keep`` is never deleted; temporary files of crashed writers older than an hour go too).

    Returns:
        The files deleted.
    """
    gone: list[Path] = []
    for tmp in Path(cache_dir).glob("*.tmp.npz"):
        with contextlib.suppress(FileNotFoundError):  # another worker deleted it
            if time.time() - tmp.stat().st_mtime > 3600:
                tmp.unlink()
    entries = cache_entries(cache_dir)
    total, limit = sum(e.size for e in entries), max_mb * 1e6
    for e in entries:
        if total <= limit:
            break
        if keep is not None and e.path == keep:
            continue
        with contextlib.suppress(FileNotFoundError):  # another worker deleted it
            e.path.unlink()
            gone.append(e.path)
        total -= e.size
    if gone:
        log.info("dataset cache over dataset_cache_mb=%g: removed %d least recently used file(s)",
                 max_mb, len(gone))
    if keep is not None and total > limit:
        log.warning("dataset cache: %s alone (%.0f MB) is over dataset_cache_mb=%g; kept",
                    keep.name, keep.stat().st_size / 1e6, max_mb)
    return gone


def clear_disk_cache(cache_dir: Path) -> tuple[int, int]:
    """Delete every file of the disk cache; returns (files, bytes) removed."""
    n = size = 0
    for e in cache_entries(cache_dir):
        with contextlib.suppress(FileNotFoundError):  # another worker deleted it
            e.path.unlink()
            n, size = n + 1, size + e.size
    for tmp in Path(cache_dir).glob("*.tmp.npz"):
        with contextlib.suppress(FileNotFoundError):  # another worker deleted it
            tmp.unlink()
    return n, size



def clear_memory_cache() -> None:
    """Forget the per-process cache (tests use it to force a disk read)."""
    _MEMORY.clear()
