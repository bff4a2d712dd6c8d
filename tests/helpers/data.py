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
