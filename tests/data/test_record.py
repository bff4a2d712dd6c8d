"""What MLflow records of a run's data (name, digest, schema, profile) and the check that a
study stays on one dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from imbsweep import data as D
from imbsweep.errors import ConfigError
from tests.helpers.data import messy_table, write_table


def test_dataset_record_names_the_file_its_digest_and_columns(tmp_path: Path) -> None:
    import hashlib
    import json

    path = write_table(messy_table(), tmp_path / "penguins.csv")
    ds = D.Tabular(path=path, target="label").build()
    who = D.identity(ds)
    assert who["digest"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    assert who["name"] == "penguins.csv" and who["source"] == str(Path(path).resolve())
    entry = D.dataset_input(D.dataset_spec(ds))
    schema = json.loads(entry.dataset.schema)["mlflow_colspec"]
    assert [(c["name"], c["type"]) for c in schema] == [("x", "double"), ("island", "string")]
    prof = json.loads(entry.dataset.profile)
    assert prof["rows"] == {s: len(getattr(ds, f"y_{s}")) for s in ("train", "val", "test")}
    assert prof["class_counts"]["rare"] == [2, 0, 0] and prof["not_evaluated"]["val"] == ["rare"]
    assert {t.key: t.value for t in entry.tags} == {"mlflow.data.context": "training"}


def test_study_data_check() -> None:
    import json

    a = {"name": "a.csv", "source": "/x/a.csv", "digest": "1111"}
    D.check_study_data(None, a, "s")  # a new study
    D.check_study_data(json.dumps({**a, "source": "/moved/a.csv"}), a, "s")  # same bytes elsewhere: same data
    with pytest.raises(ConfigError, match=r"hydra.sweeper.study_name='s': this study was run on a.csv \(digest "
                                          r"1111.*this sweep's data is b.csv \(digest 2222.*study_name=s_2222"):
        D.check_study_data(json.dumps(a), {"name": "b.csv", "source": "/x/b.csv", "digest": "2222"}, "s")
