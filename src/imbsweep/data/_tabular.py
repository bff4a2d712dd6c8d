"""A user's table (CSV or Parquet): which columns become features, what happens to missing
values, and the stratified splits."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..constraints import FRACTION, NULL, SEED, TEXT, Constraint, Interval, Options, fields_of, validate
from ..errors import ConfigError, DataError
from ._dataset import Dataset
from ._longtail import PROFILES, longtail_subsample, stratified_split

log = logging.getLogger(__name__)

NAN_POLICIES = ("impute", "drop_rows", "error")
#: the level a missing categorical value becomes (``data.nan=impute``)
MISSING_LEVEL = "<missing>"
#: a column with fewer rows than this is never called an id for being unique per row
MIN_ROWS_FOR_ID = 10
LARGEST = 1e150  # a feature value beyond this cannot be standardised (its square overflows float64)


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (the first 16 hex digits): what a dataset record calls its version."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def column_list(key: str, value: Any) -> list[str] | None:
    """A column list from a config value: a Hydra/OmegaConf list, a plain list, one name, or
    None. Anything else is a :class:`ConfigError` naming ``key``."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) or type(value).__name__ == "ListConfig":
        out = list(value)
        if all(isinstance(v, str | int) and not isinstance(v, bool) for v in out):
            return [str(v) for v in out]
    raise ConfigError(key, value, "must be null or a list of column names, e.g. [age, city]")


def _labels(col: Any) -> tuple[np.ndarray, np.ndarray]:
    """(sorted class names, label index per row) of a non-null target column; numeric labels
    sort as numbers (2 before 10) and integral floats read as integers (3.0 -> '3')."""
    import pandas as pd

    values = col.to_numpy()
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        v = values.astype(np.float64)
        if np.all(v == np.round(v)):
            v = v.astype(np.int64)
        uniq, y = np.unique(v, return_inverse=True)
        return np.array([str(u) for u in uniq]), y
    uniq, y = np.unique(col.astype(str).to_numpy(), return_inverse=True)
    return uniq, y


@dataclass
class Tabular:
    """A user's CSV or Parquet file.

    Columns: ``features`` (null: every column but the target and ``drop``), ``drop`` (never
    used) and ``categorical`` (null: the non-numeric feature columns; listed numbers are
    one-hot encoded too). Unless named in ``features`` or ``categorical``, a column that
    cannot be a feature as it is — unique per row (an id), dates, free text with more than
    ``max_categories`` distinct values, or empty — is dropped with a one-line warning that
    names it and the key to override.

    Missing values (``nan``): ``impute`` (numeric: the training split's median; categorical: a
    level of its own), ``drop_rows`` (rows with a missing feature value go, with a warning) or
    ``error``. Rows without a label are dropped with a warning.

    Stratified train/val/test splits keep the file's class distribution; scaling and
    encoding are fit on the training split only. ``imbalance_ratio`` (optional) further
    subsamples the training split to a long-tailed profile, head = the most frequent class.
    """

    path: str = "???"
    target: str = "???"
    features: list[str] | None = None
    drop: list[str] | None = None
    categorical: list[str] | None = None
    nan: str = "impute"
    max_categories: int = 50
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    imbalance_ratio: float | None = None
    profile: str = "exp"
    seed: int = 0
    name: ClassVar[str] = "tabular"
    _file: Path = field(init=False, repr=False)
    _parameter_constraints: ClassVar[Mapping[str, Sequence[Constraint]]] = {
        "path": [TEXT], "target": [TEXT, SEED], "nan": [Options(*NAN_POLICIES)],
        "max_categories": [Interval(int, 2, None)], "val_fraction": [FRACTION], "test_fraction": [FRACTION],
        "imbalance_ratio": [Interval(float, 1, None), NULL], "profile": [Options(*PROFILES)], "seed": [SEED]}

    def __post_init__(self) -> None:
        validate(type(self), fields_of(self), "data")
        _check("test_fraction", self.test_fraction, self.val_fraction + self.test_fraction < 1,
               "val_fraction + test_fraction must be < 1")
        self.target = str(self.target)
        self.features = column_list("data.features", self.features)
        self.drop = column_list("data.drop", self.drop)
        self.categorical = column_list("data.categorical", self.categorical)
        self._file = Path(self.path).expanduser()
        if self._file.is_dir():
            raise DataError("data.path", self.path, "is a folder; name a .csv or .parquet file in it "
                            "(a folder of images per class is data=image_folder)")
        if not self._file.is_file():
            raise DataError("data.path", self.path, f"no such file (looked in {Path.cwd()})")
        if self._file.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise DataError("data.path", self.path, "must be a .csv, .parquet or .pq file")

    def spec(self) -> dict[str, Any]:
        st = os.stat(self._file)
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        return {"name": self.name, **fields, "file": str(self._file.resolve()),
                "mtime_ns": st.st_mtime_ns, "size": st.st_size}

    def _read(self) -> Any:
        import pandas as pd

        try:
            if self._file.suffix.lower() == ".csv":
                self._check_header()
                return pd.read_csv(self._file)
            return pd.read_parquet(self._file)
        except (ValueError, OSError, UnicodeDecodeError) as exc:  # pandas' parser errors are ValueErrors
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError("data.path", self.path, f"cannot be read as a table: {first}") from None

    def _check_header(self) -> None:
        """Two columns of one name: pandas would rename the second (``x.1``) and train on it
        silently under a name the file does not have."""
        import csv

        with open(self._file, newline="", encoding="utf-8", errors="replace") as fh:
            header = next(csv.reader(fh), [])
        twice = sorted({h for h in header if header.count(h) > 1})
        if twice:
            raise DataError("data.path", self.path, f"names {len(twice)} column(s) more than once: "
                                                    f"{', '.join(map(repr, twice))}; give each column its own name")

    # -- columns ------------------------------------------------------------------------------
    def _columns(self, df: Any) -> tuple[list[str], list[str], dict[str, str], list[str]]:
        """(features, categorical, {dropped column: why}, datetime features) after the checks."""
        cols = [str(c) for c in df.columns]
        df.columns = cols
        listing = f"columns are: {', '.join(cols)}"
        if self.target not in cols:
            raise DataError("data.target", self.target, f"no such column in {self.path}; {listing}")
        for key in ("features", "drop", "categorical"):
            names = getattr(self, key) or []
            unknown = [c for c in names if c not in cols]
            if unknown:
                raise DataError(f"data.{key}", unknown, f"no such column(s) in {self.path}; {listing}")
            if self.target in names:
                what = "never a feature anyway" if key == "drop" else "a label cannot be a feature"
                raise DataError(f"data.{key}", names, f"lists the target {self.target!r} (data.target): {what}")
        drop, named = set(self.drop or []), set(self.features or []) | set(self.categorical or [])
        both = [c for c in cols if c in drop and c in named]
        if both:
            key = "data.features" if set(both) & set(self.features or []) else "data.categorical"
            raise DataError("data.drop", self.drop, f"{', '.join(both)} also in {key}: keep or drop, not both")
        if self.features is not None:
            stray = [c for c in self.categorical or [] if c not in self.features]
            if stray:
                raise DataError("data.categorical", self.categorical,
                                f"{', '.join(stray)} not in data.features={self.features}")
            candidates = list(self.features)
        else:
            candidates = [c for c in cols if c != self.target and c not in drop]
        dropped = {c: why for c in candidates if c not in named and (why := self._unusable(df[c])) is not None}
        features = [c for c in candidates if c not in dropped]
        if not features:
            raise DataError("data.features", self.features,
                            f"no usable feature column left in {self.path}"
                            + (f" (dropped: {', '.join(dropped)})" if dropped else ""))
        if self.categorical is not None:
            cat = list(self.categorical)
            text = [c for c in features if c not in cat and not _numeric(df[c]) and not _dates(df[c])]
            if text:
                raise DataError("data.categorical", self.categorical,
                                f"{', '.join(map(repr, text))} is text, which cannot be a number: list it in "
                                "data.categorical, or in data.drop")
        else:
            cat = [c for c in features if not _numeric(df[c]) and not _dates(df[c])]
        dates = [c for c in features if c not in cat and _dates(df[c])]
        return features, cat, dropped, dates

    def _unusable(self, col: Any) -> str | None:
        """Why a column cannot be a feature as it is (None: it can)."""
        non_null = col.dropna()
        if non_null.empty:
            return "empty: every value is missing"
        if _dates(col):
            return "dates"
        numeric = _numeric(col)
        n_distinct = int(non_null.nunique())
        integral = numeric and (col.dtype.kind in "iu" or bool(np.all(non_null == np.round(non_null))))
        if (not numeric or integral) and len(col) >= MIN_ROWS_FOR_ID and n_distinct == len(col):
            return "unique per row: an id?"
        if not numeric and n_distinct > self.max_categories:
            return f"free text: {n_distinct} distinct values > data.max_categories={self.max_categories}"
        return None

    # -- build ----------------------------------------------------------------------------------
    def build(self) -> Dataset:
        import pandas as pd

        df = self._read()
        features, cat, dropped, dates = self._columns(df)
        notes: list[str] = []
        if dropped:
            why = ", ".join(f"{c!r} ({r})" for c, r in dropped.items())
            notes.append(f"data: not used as features: {why}; name a column in data.features (or "
                         "data.categorical) to use it, or in data.drop to silence this")
        n_rows = len(df)
        unlabeled = int(df[self.target].isna().sum())
        if unlabeled:
            notes.append(f"data: {unlabeled} of {n_rows} rows have no label (data.target={self.target!r} "
                         "is empty there): dropped")
            df = df[df[self.target].notna()]
        missing = {c: int(n) for c, n in df[features].isna().sum().items() if n}
        if missing and self.nan == "error":
            shown = ", ".join(f"{c!r} {n}" for c, n in missing.items())
            raise DataError("data.nan", self.nan, f"missing values in {shown} (rows); "
                                                  "use data.nan=impute or data.nan=drop_rows")
        if missing and self.nan == "drop_rows":
            keep = df[features].notna().all(axis=1)
            notes.append(f"data.nan=drop_rows: dropped {int((~keep).sum())} of {len(df)} labeled rows with a "
                         f"missing value (in {', '.join(missing)})")
            df = df[keep]
        numeric = [c for c in features if c not in cat and c not in dates]
        huge = {c: int(n) for c in numeric
                if (n := (~(np.abs(pd.to_numeric(df[c], errors="coerce")) <= LARGEST) & df[c].notna()).sum())}
        if huge:
            shown = ", ".join(f"{c!r} {n}" for c, n in huge.items())
            raise DataError("data.path", self.path, f"infinite or huge values (inf, or beyond +-{LARGEST:g}, which "
                                                    f"cannot be standardised) in {shown} (rows): replace them, or "
                                                    "list the column in data.drop")
        labels, y = _labels(df[self.target])
        n = np.bincount(y)
        if len(labels) < 2:
            raise DataError("data.target", self.target, "needs at least 2 classes")
        if n.min() < 2:
            c = labels[int(n.argmin())]
            raise DataError("data.target", self.target,
                            f"class {c!r} has {int(n.min())} example; every class needs at least 2")
        rng = np.random.default_rng(self.seed)
        train, val, test = stratified_split(y, self.val_fraction, self.test_fraction, rng)
        if self.imbalance_ratio is not None:
            train = longtail_subsample(train, y, float(self.imbalance_ratio), self.profile, rng)
        x = df[features].copy()
        for c in dates:  # named explicitly: days since 1970 as a number
            x[c] = (_as_dates(x[c]) - pd.Timestamp(0)) / pd.Timedelta(days=1)
        parts, width = _encode(x, features, cat, train, val, test)
        xtr, xva, xte = parts
        imputed = dict(missing) if self.nan == "impute" else {}
        meta = {
            "source": str(self._file.resolve()), "digest": file_digest(self._file),
            "format": self._file.suffix.lower().lstrip("."), "target": self.target, "rows": n_rows,
            "features": [{"name": c, "type": _col_type(df[c], c in cat, c in dates)} for c in features],
            "encoded_width": width, "dropped": dropped, "nan": self.nan, "missing": imputed,
            "warnings": notes,
        }
        if imputed:
            log.info("data: imputed missing values in %s (data.nan=impute)", ", ".join(imputed))
        return Dataset(self.name, xtr, y[train].astype(np.int64), xva, y[val].astype(np.int64),
                       xte, y[test].astype(np.int64), tuple(str(c) for c in labels), kind="tabular",
                       meta=meta)


def _check(key: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"data.{key}", value, allowed)


def _numeric(col: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col))


def _as_dates(col: Any) -> Any:
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(col):
        return col
    return pd.to_datetime(col, errors="coerce", format="mixed")


def _dates(col: Any) -> bool:
    """A datetime column, or text of which at least 90% of (up to 200) values read as dates."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(col):
        return True
    if _numeric(col):
        return False
    sample = col.dropna().astype(str).head(200)
    if sample.empty or not sample.str.contains(r"\d[-/:.]\d|\d{4}", regex=True).all():
        return False
    return bool(pd.to_datetime(sample, errors="coerce", format="mixed").notna().mean() >= 0.9)


def _col_type(col: Any, categorical: bool, dates: bool) -> str:
    """The MLflow schema type of a feature column as it was read."""
    if dates:
        return "datetime"
    if categorical and not _numeric(col):
        return "string"
    kind = col.dtype.kind
    return {"b": "boolean", "i": "long", "u": "long"}.get(kind, "double" if _numeric(col) else "string")


def _encode(x: Any, features: list[str], cat: list[str], *parts: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Numeric columns median-imputed and standardised, categorical ones one-hot (a missing
    value is a level of its own), both fit on the first part (training) only."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num = [c for c in features if c not in cat]
    ct = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()), num),
        ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), cat),
    ], sparse_threshold=0.0)
    x = x.astype({c: object for c in cat})
    for c in cat:  # a level of its own for missing values, and every level as text
        x[c] = [MISSING_LEVEL if pd.isna(v) else str(v) for v in x[c]]
    for c in num:
        x[c] = x[c].astype(np.float64)
    ct.fit(x.iloc[parts[0]])
    out = [np.asarray(ct.transform(x.iloc[p]), dtype=np.float32) for p in parts]
    return out, int(out[0].shape[1])
