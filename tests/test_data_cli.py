"""Your own data through the real CLI (issue 12): tables with ids, dates, NaN, rare and colliding
labels; the tabular example of the README and docs/data.md as written; a study that stays on one dataset; an image
folder swept, compared, exported and re-run from elsewhere. What MLflow recorded is read back."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from imbsweep._paths import PROJECT_ROOT
from tests.helpers.cli import run_cli
from tests.helpers.data import make_pngs, messy_table
from tests.helpers.stores import mlflow_client, runs

if TYPE_CHECKING:
    from mlflow.entities import Dataset, Run


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _dataset(run: Run) -> Dataset:
    """The one dataset ``run`` logged as its input."""
    assert run.inputs is not None
    (data,) = run.inputs.dataset_inputs
    return data.dataset


def _parsed(field: str | None) -> Any:
    """A dataset's JSON field (schema, profile), which MLflow leaves out when there is none."""
    assert field is not None
    return json.loads(field)


def test_a_table_records_what_was_trained_on(workdir: Path) -> None:
    table = workdir / "messy.csv"
    messy_table(160, seed=1).to_csv(table, index=False)
    p = run_cli(workdir, "run", "data=tabular", "data.path=messy.csv", "data.target=label", "trainer.epochs=2",
                "tracking.experiment=messy")
    assert p.returncode == 0, p.stderr
    out = p.stdout + p.stderr
    # what is not used is said, once, with the key that overrides it
    (dropped,) = [ln for ln in out.splitlines() if "not used as features" in ln]
    assert all(s in dropped for s in ("'row_id' (unique per row", "'uid' (unique per row", "'when' (dates)",
                                      "'note' (free text: 80 distinct values", "data.features"))
    assert "class 'rare' (2 rows) too small for validation and test" in out
    (run,) = runs(workdir, "messy")
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["model._target_"] == "imbsweep.models.MLP"  # the table's natural model, none named
    assert params["data.path"] == str(table.resolve())  # recorded absolute: works from any folder
    data = _dataset(run)
    assert (data.name, data.digest) == ("messy.csv", _sha(table))
    assert json.loads(data.source) == {"uri": table.resolve().as_uri()}
    schema = _parsed(data.schema)["mlflow_colspec"]
    assert [(c["name"], c["type"]) for c in schema] == [("x", "double"), ("island", "string")]
    profile = _parsed(data.profile)
    assert profile["class_counts"]["rare"] == [2, 0, 0] and sum(profile["rows"].values()) == 160
    assert tags["imbsweep.data.digest"] == _sha(table)
    assert tags["imbsweep.data.not_evaluated"] == "val: rare; test: rare"
    # one metric per class, no collision (<4.8kg and >4.8kg), no nesting (teacher/nurse), none for 'rare'
    recalls = sorted(k for k in metrics if k.startswith("test/recall/"))
    assert recalls == ["test/recall/0__4.8kg", "test/recall/1__4.8kg", "test/recall/3_teacher_nurse"]
    local = Path(mlflow_client(workdir).download_artifacts(run.info.run_id, "per_class.csv", str(workdir / "dl")))
    per_class = pd.read_csv(local).set_index("class")
    assert per_class["key"].tolist() == ["0__4.8kg", "1__4.8kg", "2_rare", "3_teacher_nurse"]
    assert pd.isna(per_class.loc["rare", "val_recall"]) and per_class.loc["rare", "val_support"] == 0
    assert per_class.loc["<4.8kg", "test_recall"] == pytest.approx(metrics["test/recall/0__4.8kg"], abs=1e-6)


def test_readme_tabular_example_runs_as_written(tmp_path: Path) -> None:
    pages = [PROJECT_ROOT / "README.md", PROJECT_ROOT / "docs" / "data.md", PROJECT_ROOT / "docs" / "cli.md"]
    shown = [ln for page in pages for ln in page.read_text().splitlines()
             if ln.startswith("imbsweep run data=tabular data.path=my.csv data.target=label")]
    assert len(shown) >= len(pages)  # each page shows it
    # every place the README and the docs show it, the same command (comments aside)
    (argv,) = {tuple(ln.split("#")[0].split()) for ln in shown}
    assert argv == ("imbsweep", "run", "data=tabular", "data.path=my.csv", "data.target=label")
    rows = messy_table(120)
    rows.to_csv(tmp_path / "my.csv", index=False)
    p = run_cli(tmp_path, *argv[1:])
    assert p.returncode == 0, p.stderr
    (run,) = runs(tmp_path, "imbsweep")
    assert run.info.status == "FINISHED" and run.data.params["model._target_"] == "imbsweep.models.MLP"
    assert run.data.params["trainer.epochs"] == "60"  # as written: the defaults


@pytest.mark.parametrize(("args", "line"), [  # the others are checked without a process: tests/data/
    (["data.features=[x,nope]"], "data.features=['nope']: no such column(s) in messy.csv; columns are: row_id"),
    (["data.features=[x,label]"], "data.features=['x', 'label']: lists the target 'label'"),
    (["model=cnn1d"], "model='cnn1d': takes sequence data; data=tabular is tabular data: use model=mlp or "
                      "model=logreg"),
])
def test_bad_data_input_is_one_line_and_no_run(workdir: Path, args: list[str], line: str) -> None:
    messy_table(160, seed=1).to_csv(workdir / "messy.csv", index=False)
    p = run_cli(workdir, "run", "data=tabular", "data.path=messy.csv", "data.target=label",
                "tracking.experiment=bad_data", *args)
    assert p.returncode == 2, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("imbsweep:")]
    assert len(errors) == 1 and errors[0].startswith(f"imbsweep: error: {line}"), p.stderr
    assert "Traceback" not in p.stderr
    assert runs(workdir, "bad_data") == []  # checked before anything is recorded


SWEEP = """# @package _global_
defaults:
  - override /hydra/sweeper: imbsweep_optuna
  - override /hydra/sweeper/sampler: random
  - override /data: tabular
data:
  target: label
  categorical: [island]
model:
  hidden_sizes: [16]
trainer:
  epochs: 1
  batch_size: 32
hydra:
  mode: MULTIRUN
  sweeper:
    study_name: {study}
    n_trials: 2
    sampler: {{seed: 0}}
    params:
      optimizer.lr: tag(log, interval(1e-3, 1e-1))
"""


@pytest.mark.slow  # (make test-all: make test keeps to its 15 minutes on 2 cores)
def test_a_study_keeps_its_columns_and_its_data(workdir: Path) -> None:
    conf = workdir / "conf_tab"
    (conf / "sweep").mkdir(parents=True)
    (conf / "sweep" / "tab.yaml").write_text(SWEEP.format(study="tab_study"))
    first, other = workdir / "first.parquet", workdir / "other.parquet"
    messy_table(150, seed=2).to_parquet(first)
    messy_table(150, seed=3).to_parquet(other)
    # columns from the sweep file (categorical) and from the command line (drop), together
    p = run_cli(workdir, "sweep", "tab", "data.path=first.parquet", "data.drop=[note]", "--config-dir", str(conf))
    assert p.returncode == 0, p.stderr
    trials = [r for r in runs(workdir, "tab_study") if r.data.tags.get("imbsweep.role") != "parent"]
    assert len(trials) == 2
    for r in trials:
        data = _dataset(r)
        assert data.digest == _sha(first)
        assert [c["name"] for c in _parsed(data.schema)["mlflow_colspec"]] == ["x", "island"]
        assert r.data.params["data.drop"] == "['note']" and r.data.params["data.categorical"] == "['island']"
    (parent,) = [r for r in runs(workdir, "tab_study") if r.data.tags.get("imbsweep.role") == "parent"]
    assert json.loads(parent.data.tags["imbsweep.data"])["digest"] == _sha(first)
    # the same study on another file: one line naming both, a new name suggested, nothing left RUNNING
    p = run_cli(workdir, "sweep", "tab", "data.path=other.parquet", "hydra.sweeper.n_trials=3",
                "--config-dir", str(conf))
    assert p.returncode == 2, p.stderr
    (err,) = [ln for ln in p.stderr.splitlines() if ln.startswith("imbsweep:")]
    assert re.search(rf"study_name='tab_study': this study was run on first.parquet \(digest {_sha(first)}, .*"
                     rf"this sweep's data is other.parquet \(digest {_sha(other)}, .*study_name=tab_study_", err), err
    after = runs(workdir, "tab_study")
    assert len(after) == 3 and all(r.info.status != "RUNNING" for r in after)


IMAGE_SWEEP = """# @package _global_
defaults:
  - override /hydra/sweeper: imbsweep_optuna
  - override /data: image_folder
data:
  path: pets
  image_size: 8
  n_val_per_class: 3
  n_test_per_class: 4
model:
  depth: 8
  width: 4
trainer:
  epochs: 2
  batch_size: 16
hydra:
  mode: MULTIRUN
  sweeper:
    study_name: pets
    n_trials: 2
    sampler: {seed: 0}
    params:
      optimizer.lr: tag(log, interval(1e-3, 1e-1))
"""


@pytest.mark.slow  # four CLI processes: about a minute on 2 busy cores (make test-all runs it)
def test_image_folder_sweep_compare_export_rerun_reproduces(workdir: Path, tmp_path: Path) -> None:
    make_pngs(workdir / "pets", {"cat": 16, "dog": 13, "eel": 11}, size=(9, 8))
    conf = workdir / "conf_img"
    (conf / "sweep").mkdir(parents=True)
    (conf / "sweep" / "pets.yaml").write_text(IMAGE_SWEEP)
    p = run_cli(workdir, "sweep", "pets", "--config-dir", str(conf))
    assert p.returncode == 0, p.stderr
    trials = [r for r in runs(workdir, "pets") if r.data.tags.get("imbsweep.role") not in ("parent", "reseed")]
    assert len(trials) == 2
    assert all(r.data.params["model._target_"] == "imbsweep.models.ResNet" for r in trials)  # its natural model
    data = _dataset(trials[0])
    assert data.name == "pets" and _parsed(data.profile)["image_shape"] == [3, 8, 8]
    p = run_cli(workdir, "compare", "pets", "--reseed", "1", "--no-report")
    assert p.returncode == 0, p.stderr
    assert any(r.data.tags.get("imbsweep.role") == "reseed" for r in runs(workdir, "pets"))
    p = run_cli(workdir, "export", "pets", "--out", str(workdir / "best_pets"))
    assert p.returncode == 0, p.stderr
    found = re.search(r"MLflow run (\w+)", p.stdout)
    assert found is not None, p.stdout
    run_id = found.group(1)
    exported = (workdir / "best_pets" / "pets.yaml").read_text()
    assert f"path: {(workdir / 'pets').resolve()}" in exported  # a path that works from any folder
    # re-run it from another folder, with its own store: the same metrics, exactly
    p = run_cli(tmp_path, "run", "--config-dir", str(workdir), "+best_pets=pets", "tracking.experiment=rerun")
    assert p.returncode == 0, p.stderr
    (again,) = runs(tmp_path, "rerun")
    trial = mlflow_client(workdir).get_run(run_id).data.metrics
    keys = [k for k in trial if k.startswith(("test/", "val/selected/"))]
    assert len(keys) > 20 and {k: again.data.metrics[k] for k in keys} == {k: trial[k] for k in keys}
