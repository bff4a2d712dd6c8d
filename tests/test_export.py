"""``export`` on the synthetic study ``syn`` written into a real MLflow store (SQLite): the best
trials as global Hydra configs (top-k, one trick, JSON, never overwritten without ``force``),
a multi-objective study's Pareto front, the diff against the defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from imbsweep._client import make_client
from imbsweep.errors import ImbsweepError
from imbsweep.export import diff, export, pareto_front, reproduce_command, safe_name
from imbsweep.results import load_study
from tests.helpers.synthetic import SynStore


def test_export_writes_the_best_trials_as_global_hydra_configs(syn_store: SynStore, tmp_path: Path) -> None:
    work, uri, info = syn_store
    record = load_study("syn", uri)
    out = tmp_path / "best"
    done = export(record, out, top_k=2)
    assert [e.name for e in done] == ["syn", "syn_2"]
    ranked = record.trials[record.trials["state"] == "complete"].sort_values("metrics.val/balanced_acc",
                                                                             ascending=False)
    assert [e.run_id for e in done] == list(ranked["run_id"][:2])
    text = (out / "syn.yaml").read_text()
    best = make_client(uri).get_run(done[0].run_id)
    assert text.startswith("# @package _global_\n")
    assert f"trial {best.data.tags['imbsweep.trial']}" in text and best.info.run_id in text
    assert "val/balanced_acc = " in text and "reproduce: imbsweep run --config-dir" in text
    doc = yaml.safe_load(text)
    loss = best.data.tags["imbsweep.choice.loss"]
    assert doc["defaults"][:3] == [{"override /data": "digits_lt"}, {"override /model": "mlp"},
                                   {"override /loss": loss}]
    assert doc["defaults"][-1] == "_self_" and not any("tracking" in str(d) for d in doc["defaults"])
    assert doc["optimizer"]["lr"] == float(best.data.params["optimizer.lr"])
    assert "tracking" not in doc and "state_dir" not in doc
    # no overwrite without --force, and nothing half-written
    before = (out / "syn.yaml").read_text()
    with pytest.raises(ImbsweepError, match="already exists; pass --force"):
        export(record, out, top_k=3)
    assert (out / "syn.yaml").read_text() == before and not (out / "syn_3.yaml").exists()
    assert len(export(record, out, top_k=3, force=True)) == 3
    (j,) = export(record, out, fmt="json", trick="focal")
    data = json.loads(j.path.read_text())
    assert data["trick"] == "focal" and data["choices"]["loss"] == "focal" and "tracking" not in data["values"]


def test_export_of_a_multi_objective_study_is_its_pareto_front() -> None:
    df = pd.DataFrame({"metrics.a": [0.9, 0.8, 0.7, 0.85], "metrics.b": [0.3, 0.1, 0.2, 0.3]})
    front = pareto_front(df, [("a", "maximize"), ("b", "minimize")])
    # row 2 is dominated by row 1 (worse a, worse b); row 3 by row 0 (worse a, same b)
    assert list(front.index) == [0, 1]


def test_diff_keeps_only_changed_values_and_never_the_environment() -> None:
    run = {"optimizer": {"lr": 0.01, "name": "adam"}, "trainer": {"epochs": 3, "seed": 0},
           "tracking": {"uri": "postgresql://u:secret@h/db"}, "state_dir": "/home/x/mlruns", "new": 1}
    default = {"optimizer": {"lr": 0.001, "name": "adam"}, "trainer": {"epochs": 3, "seed": 0},
               "tracking": {"uri": None}, "state_dir": "mlruns"}
    assert diff(run, default) == {"optimizer": {"lr": 0.01}, "new": 1}
    assert safe_name("my study/v2") == "my_study_v2"
    from imbsweep._paths import user_conf_dir

    assert reproduce_command(user_conf_dir() / "best", "x") == "imbsweep run +best=x"


def test_export_names_compare_s_winner_and_exports_it_with_winner(syn_store: SynStore, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``export`` picks the best validation trial; when compare's replicates recommend another
    arm it says which and how to export it; ``--winner`` exports that arm's best trial."""
    from imbsweep.cli import main
    from imbsweep.compare import compare

    work, uri, _ = syn_store
    monkeypatch.chdir(work)
    record = load_study("syn", uri)
    winner, why = compare(record).winner
    assert winner is not None and ("beats tuned ce" in why or "no arm beats" in why)
    assert main(["export", "syn", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    best = export(record, tmp_path / "b")[0]
    assert (f"compare's winner is {winner}" in out) == (best.arm != winner)
    assert main(["export", "syn", "--out", str(tmp_path / "w"), "--winner"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"compare's winner: {winner}: ")
    (mine,) = export(record, tmp_path / "c", trick=winner)  # a study without arms: its tricks
    assert f"MLflow run {mine.run_id}" in out and "compare's winner is" not in out


def test_export_winner_without_replicates_says_how_to_get_them(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from imbsweep.cli import main
    from tests.helpers.stores import mlflow_db
    from tests.helpers.synthetic import make_study

    uri = f"sqlite:///{mlflow_db(tmp_path)}"
    make_study(make_client(uri), "fresh", 3, tmp_path / "mlruns" / "artifacts", tricks=("ce", "focal"))
    monkeypatch.chdir(tmp_path)
    assert main(["export", "fresh", "--winner"]) == 2
    err = capsys.readouterr().err
    assert "--winner: study 'fresh' has no winner yet: no seed replicates yet (imbsweep compare fresh --reseed 5)" \
        in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "conf").exists()
