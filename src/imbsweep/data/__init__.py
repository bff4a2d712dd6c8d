"""Datasets: long-tailed training splits with balanced (or stratified) val/test splits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._cifar import CIFAR10LT, CIFAR100LT, cifar_lt_counts, ldam_order
from ._dataset import (
    DEFAULT_CACHE_MB,
    KINDS,
    CacheEntry,
    Dataset,
    cache_entries,
    cache_key,
    cached,
    clear_disk_cache,
    clear_memory_cache,
    evict,
)
from ._images import Augment, ImageFolder, image_augment, import_torchvision, normalised_splits
from ._longtail import (
    balanced_holdout,
    longtail_counts,
    longtail_subsample,
    stratified_split,
    subsample_pool,
)
from ._record import (
    check_study_data,
    dataset_input,
    dataset_spec,
    identity,
    not_evaluated,
    profile,
    split_warnings,
    warnings_of,
)
from ._sources import MNIST1DLT, BundledTableLT, DigitsLT, LongTailSource, Synthetic, scale
from ._tabular import Tabular, column_list, file_digest

__all__ = [
    "Augment", "BundledTableLT", "CIFAR100LT", "CIFAR10LT", "CacheEntry", "DEFAULT_CACHE_MB", "Dataset", "DigitsLT",
    "ImageFolder", "KINDS", "LongTailSource", "MNIST1DLT", "Synthetic", "Tabular", "balanced_holdout",
    "cache_entries", "cache_key", "cached", "check_study_data", "cifar_lt_counts", "clear_disk_cache",
    "clear_memory_cache", "column_list", "dataset_input",
    "dataset_spec", "evict", "file_digest", "identity", "image_augment", "import_torchvision",
    "ldam_order", "load_dataset", "longtail_counts", "longtail_subsample", "normalised_splits", "not_evaluated",
    "profile", "scale", "split_warnings", "stratified_split", "study_data", "subsample_pool", "warnings_of",
]

log = logging.getLogger(__name__)
_WARNED: set[int] = set()  # datasets whose warnings this process has shown


def load_dataset(data_cfg: Any, cache_dir: Path | None, max_mb: Any = DEFAULT_CACHE_MB) -> Dataset:
    """Build (or fetch from the memory/disk cache) the dataset a ``data`` config node names.

    The first time a process uses a dataset, what it deserves a warning for (columns not used,
    rows dropped, classes too small to evaluate) is logged, one line each, cached or not.

    Args:
        data_cfg: the ``data`` config node (``_target_`` plus the source's arguments).
        cache_dir: the disk cache folder (None: memory only).
        max_mb: the disk cache's bound (config key ``dataset_cache_mb``; null: unbounded).
    """
    from .._config import instantiate_checked

    if max_mb is not None and (isinstance(max_mb, bool) or not isinstance(max_mb, int | float) or max_mb <= 0):
        raise ConfigError("dataset_cache_mb", max_mb, "must be a number > 0 (megabytes) or null (unbounded)")
    source = instantiate_checked(data_cfg, "data")
    ds = cached(source.spec(), source.build, cache_dir, None if max_mb is None else float(max_mb))
    if id(ds) not in _WARNED:
        _WARNED.add(id(ds))
        for line in warnings_of(ds):
            log.warning(line)
    return ds


def study_data(cfg: Any) -> dict[str, str]:
    """:func:`identity` of the dataset a composed config trains on (built, or read from the
    cache, as its first trial would): what a study remembers of its data."""
    from .._paths import cache_dir

    return identity(load_dataset(cfg.data, cache_dir(cfg), cfg.get("dataset_cache_mb", DEFAULT_CACHE_MB)))
