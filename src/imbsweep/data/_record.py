"""What a run was trained on: the warnings a dataset deserves every time it is used (rare
classes), and its record as an MLflow dataset input (name, digest, schema, profile)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..names import DATA_CONTEXT, SOURCE_DATASET
from ._dataset import Dataset

#: validation with fewer examples of a class than this gets a warning (its recall moves in big steps)
FEW_VAL = 5
#: the profile lists the per-class counts of at most this many classes
PROFILE_CLASSES = 100


def not_evaluated(ds: Dataset) -> dict[str, list[str]]:
    """The classes with no example in validation / in test: ``{"val": [...], "test": [...]}``."""
    counts = ds.class_counts()
    return {s: [ds.class_names[c] for c, n in enumerate(counts[s]) if n == 0] for s in ("val", "test")}


def split_warnings(ds: Dataset) -> list[str]:
    """One line per problem: classes that validation or test does not hold at all (trained on,
    never measured), and classes with fewer than :data:`FEW_VAL` validation examples."""
    counts = ds.class_counts()
    out = []
    missing = not_evaluated(ds)
    both = [c for c in missing["val"] if c in missing["test"]]
    only = {s: [c for c in missing[s] if c not in both] for s in ("val", "test")}
    total = {name: sum(counts[s][i] for s in counts) for i, name in enumerate(ds.class_names)}
    if both:
        shown = ", ".join(f"{c!r} ({total[c]} rows)" for c in both)
        out.append(f"data: class {shown} too small for validation and test: trained on, not evaluated "
                   "(no recall; per_class.csv marks it); a class needs 3 rows to be held out")
    for split, word in (("val", "validation"), ("test", "test")):
        if only[split]:
            out.append(f"data: {word} holds no example of class {', '.join(map(repr, only[split]))}: "
                       f"not evaluated on {word}")
    few = [(ds.class_names[c], n) for c, n in enumerate(counts["val"]) if 0 < n < FEW_VAL]
    if few:
        shown = ", ".join(f"{name!r} ({n})" for name, n in few)
        out.append(f"data: validation holds fewer than {FEW_VAL} examples of class {shown}: their recall "
                   "(and the objective) moves in steps of 1/n; more data or a larger data.val_fraction "
                   "(data.n_val_per_class) helps")
    return out


def warnings_of(ds: Dataset) -> list[str]:
    """Everything worth a warning whenever ``ds`` is used: what the build noted (columns
    dropped, rows dropped) and the rare-class checks."""
    return [*ds.meta.get("warnings", []), *split_warnings(ds)]


def display_name(ds: Dataset) -> str:
    """The dataset's name in MLflow: the one its source gives (``meta["display_name"]``: CIFAR-LT
    with its ratio), else the file or folder name of a user's data, else the source."""
    if ds.meta.get("display_name"):
        return str(ds.meta["display_name"])
    source = ds.meta.get("source")
    if source and not str(source).startswith("generated"):
        return Path(str(source)).name
    return ds.name


def identity(ds: Dataset) -> dict[str, str]:
    """What a study remembers of its data: name, source and digest (a user's file: of its bytes)."""
    return {"name": display_name(ds), "source": str(ds.meta.get("source", ds.name)),
            "digest": str(ds.meta.get("digest", ""))}


def profile(ds: Dataset) -> dict[str, Any]:
    """Split sizes, class counts per split, features used and dropped: the dataset input's profile."""
    counts = ds.class_counts()
    out: dict[str, Any] = {
        "kind": ds.kind, "rows": {s: int(sum(v)) for s, v in counts.items()}, "classes": ds.n_classes,
        "input_shape": list(ds.x_train.shape[1:]),
    }
    if ds.n_classes <= PROFILE_CLASSES:
        out["class_counts"] = {name: [counts[s][i] for s in ("train", "val", "test")]
                               for i, name in enumerate(ds.class_names)}
        out["class_counts_order"] = ["train", "val", "test"]
    for key in ("target", "encoded_width", "dropped", "nan", "missing", "image_shape", "normalize"):
        if ds.meta.get(key):
            out[key] = ds.meta[key]
    gone = not_evaluated(ds)
    if gone["val"] or gone["test"]:
        out["not_evaluated"] = gone
    return out


def schema_json(ds: Dataset) -> str:
    """The MLflow schema of what the model saw: the table's feature columns (their types as
    read), else the tensor of one example, with the int64 label as the target."""
    from mlflow.data.schema import TensorDatasetSchema
    from mlflow.types import ColSpec, DataType, Schema, TensorSpec

    features = ds.meta.get("features")
    if features:
        return json.dumps({"mlflow_colspec": Schema([ColSpec(DataType[f["type"]], f["name"])
                                                     for f in features]).to_dict()})
    shape = ds.image_shape or tuple(ds.x_train.shape[1:])
    schema = TensorDatasetSchema(features=Schema([TensorSpec(np.dtype(np.float32), (-1, *shape), "x")]),
                                 targets=Schema([TensorSpec(np.dtype(np.int64), (-1,), "y")]))
    return json.dumps(schema.to_dict())


def dataset_spec(ds: Dataset, context: str = "training") -> dict[str, str]:
    """What the run's MLflow dataset input holds, as plain text (no MLflow import)."""
    return {"name": display_name(ds), "digest": str(ds.meta.get("digest", ""))[:36],
            "source": str(ds.meta.get("source", ds.name)), "dataset": ds.name,
            "schema": schema_json(ds), "profile": json.dumps(profile(ds)), "context": context}


def dataset_input(spec: dict[str, str]) -> Any:
    """The run's ``mlflow.entities.DatasetInput`` from :func:`dataset_spec`: shown in the UI's
    Dataset column and on the run's page (name, digest, source, schema, profile)."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import get_registered_sources
    from mlflow.entities import Dataset as DatasetEntity
    from mlflow.entities import DatasetInput, InputTag

    source_text = spec["source"]
    if source_text.startswith("generated"):
        source: Any = CodeDatasetSource({"generator": source_text.removeprefix("generated: "),
                                         SOURCE_DATASET: spec["dataset"]})
    else:
        local: Any = next(s for s in get_registered_sources() if s._get_source_type() == "local")
        source = local(Path(source_text).as_uri())
    entity = DatasetEntity(name=spec["name"], digest=spec["digest"], source_type=source._get_source_type(),
                           source=source.to_json(), schema=spec["schema"], profile=spec["profile"])
    return DatasetInput(entity, [InputTag(DATA_CONTEXT, spec["context"])])


def check_study_data(recorded: str | None, data: dict[str, str], study: str) -> None:
    """A study stays on one dataset: ``recorded`` (its parent run's :data:`TAG_STUDY_DATA`,
    None for a new study or one recorded before the tag existed) must have ``data``'s digest.

    Raises:
        ConfigError: the study was run on other data (one line naming both, with a new name).
    """
    from ..errors import ConfigError

    if not recorded:
        return
    try:
        old = json.loads(recorded)
    except ValueError:
        return
    if not isinstance(old, dict) or old.get("digest") == data["digest"]:
        return

    def say(d: dict[str, Any]) -> str:
        return f"{d.get('name')} (digest {d.get('digest')}, {d.get('source')})"

    raise ConfigError("hydra.sweeper.study_name", study,
                      f"this study was run on {say(old)}; this sweep's data is {say(data)}: a study compares "
                      f"trials on one dataset, so use a new study name, e.g. hydra.sweeper.study_name="
                      f"{study}_{data['digest'][:6]}")
