"""The files a complete run logs beside its metrics: ``per_class.csv``, ``posthoc.csv`` and
``confusion_matrix.png`` (``config.yaml`` is ``_config.to_yaml``). Drawn and tabulated here,
and written into a run's folder by :func:`write_files` for ``tracking.MlflowRun``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .records import Result


def per_class_columns(result: Result) -> dict[str, list[Any]]:
    """``per_class.csv``'s columns as plain lists:
    one row per class: its label, training count, shot group, val/test support, recall and
    precision, and its metric key (``val/recall/<key>``); a class a split does not hold has no
    recall there (empty, not 0: it was not evaluated)."""
    from .metrics import class_keys

    counts = result.train_class_counts
    groups = result.shots.of(counts)
    rows: dict[str, Any] = {
        "class": list(result.class_names), "train_count": counts,
        "shot": [next(g for g, m in groups.items() if m[i]) for i in range(len(counts))],
    }
    for split, ev in (("val", result.val), ("test", result.test)):
        if ev is not None:
            rows[f"{split}_support"] = ev.support
            rows[f"{split}_recall"] = np.where(ev.support > 0, np.round(ev.recall, 6), np.nan)
            rows[f"{split}_precision"] = np.round(ev.precision, 6)
    rows["key"] = class_keys(result.class_names)  # last: readers of the older columns keep their order
    return {k: np.asarray(v).tolist() for k, v in rows.items()}


def posthoc_columns(result: Result) -> dict[str, list[Any]]:
    """``posthoc.csv``'s columns as plain lists: the post-hoc tau scan, one row per tau, the
    metric on validation (which picks tau) and on test (reported only)."""
    scan = result.posthoc
    assert scan is not None
    cols = {"tau": scan.taus, f"val_{scan.metric}": np.round(scan.val, 6),
            f"test_{scan.metric}": np.round(scan.test, 6), "picked": [t == scan.tau for t in scan.taus]}
    return {k: np.asarray(v).tolist() for k, v in cols.items()}


_FONTS: dict[int, Any] = {}


def _font(size: int) -> Any:
    """matplotlib's DejaVu Sans at ``size`` px, loaded once per process, whose rendered glyph
    masks are kept: a confusion matrix draws the same ~100 short labels in every run, and
    FreeType's rendering of them was a third of drawing it (the pixels are the same)."""
    if size not in _FONTS:
        import matplotlib
        from PIL import ImageFont

        class CachedFont(ImageFont.FreeTypeFont):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self._masks: dict[Any, Any] = {}

            def getmask2(self, text: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
                try:
                    key = (text, args, tuple(sorted(kwargs.items())))
                    hash(key)
                except TypeError:
                    return super().getmask2(text, *args, **kwargs)
                if key not in self._masks:
                    self._masks[key] = super().getmask2(text, *args, **kwargs)
                return self._masks[key]

        ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        _FONTS[size] = CachedFont(str(ttf), size)
    return _FONTS[size]


def plot_confusion(cm: np.ndarray, names: tuple[str, ...], title: str, path: Path) -> None:
    """Row-normalised confusion matrix (recall on the diagonal) as a PNG.

    Drawn with Pillow rather than a matplotlib figure: one PNG per run, and matplotlib's text
    layout for ~100 cell labels cost ~0.08 s a run, most of what recording a run cost beside
    its metrics (see the tracking-overhead section of docs/benchmarks.md). Colours (``Blues``)
    and font (DejaVu Sans) are matplotlib's own, so it looks like the report's plots.
    """
    import matplotlib
    from PIL import Image, ImageDraw

    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    n = len(names)
    cell = int(np.clip(560 // max(n, 1), 8, 44))
    font, small = _font(12), _font(max(7, min(11, cell // 4)))
    label = max((font.getlength(s) for s in names), default=0.0)
    vertical = n > 12 or label > cell  # column labels that would overlap are turned 90 degrees
    col_h = int(label) + 6 if vertical else 18
    left, top, pad = int(label) + 30, 34, 12
    side = n * cell
    width = max(left + side + pad, int(font.getlength(title)) + 2 * pad)
    img = Image.new("RGB", (width, top + side + col_h + 24), "white")
    rgba = matplotlib.colormaps["Blues"](np.clip(norm, 0, 1), bytes=True)
    img.paste(Image.fromarray(rgba[..., :3]).resize((side, side), Image.Resampling.NEAREST),
              (left, top))
    d = ImageDraw.Draw(img)
    d.rectangle((left - 1, top - 1, left + side, top + side), outline="black")
    d.text((width / 2, 16), title, fill="black", font=font, anchor="mm")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                d.text((left + (j + 0.5) * cell, top + (i + 0.5) * cell), f"{norm[i, j]:.2f}",
                       fill="white" if norm[i, j] > 0.5 else "black", font=small, anchor="mm")
    for k, name in enumerate(names):
        mid = k * cell + cell // 2
        d.text((left - 5, top + mid), name, fill="black", font=font, anchor="rm")
        if vertical:
            w = int(font.getlength(name)) + 2
            tile = Image.new("RGB", (w, 16), "white")
            ImageDraw.Draw(tile).text((0, 8), name, fill="black", font=font, anchor="lm")
            tile = tile.rotate(90, expand=True)
            img.paste(tile, (left + mid - 8, top + side + 4 + col_h - 6 - w))
        else:
            d.text((left + mid, top + side + 4), name, fill="black", font=font, anchor="mt")
    d.text((left + side / 2, top + side + col_h + 12), "predicted", fill="black", font=font,
           anchor="mm")
    axis = Image.new("RGB", (60, 16), "white")
    ImageDraw.Draw(axis).text((30, 8), "true", fill="black", font=font, anchor="mm")
    img.paste(axis.rotate(90, expand=True), (2, top + side // 2 - 30))
    img.save(path, compress_level=1)  # zlib's fastest level: same pixels, a few KB larger


def write_files(out: Path, texts: Mapping[str, str], tables: Mapping[str, Any],
                confusion: Mapping[str, Any] | None) -> None:
    """A run's artifact files in the folder ``out`` (made if need be): ``texts`` as they are,
    ``tables`` (columns) as CSV and the confusion matrix (``{"matrix", "names", "title"}``) as
    a PNG, each whole or not at all (written beside, then renamed: a kill leaves no half a file)."""

    def put(name: str, write: Any) -> None:
        # beside the folder, not in it (MLflow would list it); its suffix kept (Pillow picks the format by it)
        part = out.parent / f".part-{os.getpid()}-{out.name}-{name}"
        try:
            write(part)
            os.replace(part, out / name)
        finally:
            part.unlink(missing_ok=True)

    out.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        put(name, lambda p, text=text: p.write_text(text, encoding="utf-8"))
    for name, columns in tables.items():
        put(name, lambda p, columns=columns: p.write_text(csv_text(columns), encoding="utf-8"))
    if confusion is not None:
        put("confusion_matrix.png", lambda p: plot_confusion(
            np.asarray(confusion["matrix"]), tuple(confusion["names"]), str(confusion["title"]), p))


def csv_text(columns: Mapping[str, list[Any]]) -> str:
    """A table's columns as CSV, as ``pandas.DataFrame(columns).to_csv(index=False)`` writes
    them (a missing value empty, floats as Python shows them), without building a frame."""
    import csv
    import io
    import math

    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    def column(values: list[Any]) -> list[Any]:
        present = [v for v in values if not missing(v)]
        # pandas makes a column of numbers with a float or a gap in it floats (1 -> 1.0)
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)
        floats = numbers and (len(present) < len(values) or any(isinstance(v, float) for v in present))
        return ["" if missing(v) else float(v) if floats else v for v in values]

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*(column(list(v)) for v in columns.values()), strict=True))
    return buf.getvalue()


def local_dir(uri: str) -> Path | None:
    """The folder of a ``file:`` (or scheme-less) artifact URI; None for any other store."""
    from urllib.parse import unquote, urlparse

    if not uri:
        return None

    parsed = urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    return Path(uri) if not parsed.scheme else None
