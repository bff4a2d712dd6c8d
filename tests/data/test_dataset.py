"""The dataset cache: in memory and on disk, keyed by the dataset's spec, bounded least
recently used first."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imbsweep import data as D


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
