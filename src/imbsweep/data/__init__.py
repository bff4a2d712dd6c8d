"""Datasets: long-tailed training splits with balanced (or stratified) val/test splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._dataset import Dataset, cache_key, cached, clear_memory_cache
from ._longtail import balanced_holdout, longtail_counts, stratified_split, subsample_pool
from ._sources import MNIST1DLT, DigitsLT, LongTailSource, Synthetic, Tabular, scale

__all__ = [
    "MNIST1DLT", "Dataset", "DigitsLT", "LongTailSource", "Synthetic", "Tabular",
    "balanced_holdout", "cache_key", "cached", "clear_memory_cache", "load_dataset",
    "longtail_counts", "scale", "stratified_split", "subsample_pool",
]


def load_dataset(data_cfg: Any, cache_dir: Path | None) -> Dataset:
    """Build (or fetch from the memory/disk cache) the dataset a ``data`` config node names."""
    from .._config import instantiate_checked

    source = instantiate_checked(data_cfg, "data")
    return cached(source.spec(), source.build, cache_dir)
