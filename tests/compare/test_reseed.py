"""Replicates (``compare --reseed``): which seeds of which arms are planned, and the real
replicate path that trains them in worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from imbsweep._client import make_client
from imbsweep.results import load_study
from tests.helpers.cli import csv_by_arm
from tests.helpers.stores import mlflow_db
from tests.helpers.synthetic import SYN_RESEEDS, TRICKS, SynStore, make_study


def test_reseed_plans_only_the_missing_seeds_of_the_top_arms_and_the_baseline(syn_store: SynStore) -> None:
    from imbsweep.compare import reseed_jobs

    work, uri, info = syn_store
    record = load_study("syn", uri)
    jobs = reseed_jobs(record, "val/balanced_acc", "maximize", SYN_RESEEDS + 1, work / "mlruns", None, top=1,
                       baseline="ce")
    best = max(info["best"], key=lambda t: info["best"][t][0])
    # seeds 1..3 exist already: only seed 4, of the best arm and of the baseline
    assert sorted((j.arm, j.seed) for j in jobs) == sorted([(best, SYN_RESEEDS + 1), ("ce", SYN_RESEEDS + 1)])
    assert all(j.run_id == info["best"][j.arm][1] and j.choices["loss"] for j in jobs)
    assert reseed_jobs(record, "val/balanced_acc", "maximize", SYN_RESEEDS, work / "mlruns", None) == []
    # replicates that also vary data.seed are another kind: none of them exist yet
    split = reseed_jobs(record, "val/balanced_acc", "maximize", 2, work / "mlruns", None, vary_split=True)
    assert sorted((j.arm, j.seed) for j in split) == sorted((t, s) for t in TRICKS for s in (1, 2))
    assert all(j.vary_split for j in split)


@pytest.mark.slow  # ~80 s on 2 cores: 3 worker pools that train; tests/test_compare_cli.py covers reseed by default
def test_reseed_runs_the_same_seeds_in_every_arm_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The real replicate path (training in worker processes) on a 2-arm tournament whose
    best trials already have seed 1: ``--reseed 2`` adds only seed 2, in both arms."""
    from imbsweep.cli import main

    uri = f"sqlite:///{mlflow_db(tmp_path)}"
    client = make_client(uri)
    info = make_study(client, "small", 2, tmp_path / "mlruns" / "artifacts", reseeds=1, seed=3,
                      arms={"plain": "ce", "la": "logit_adjusted"}, baseline="plain")
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "small", "--reseed", "2", "--jobs", "2", "--format", "csv", "--no-report"]) == 0
    table = csv_by_arm(capsys.readouterr().out)
    assert {a: (r["seeds"], r["seed_ids"]) for a, r in table.items()} == {"plain": ("2", "1 2"), "la": ("2", "1 2")}
    new = [r for r in client.search_runs([info["experiment_id"]], max_results=1000)
           if r.data.tags.get("imbsweep.role") == "reseed" and r.info.status == "FINISHED"
           and "fit_time_s" in r.data.metrics and r.data.tags.get("imbsweep.replicate") == "2"]
    assert sorted(r.data.tags["imbsweep.arm"] for r in new) == ["la", "plain"]
    for r in new:  # seed 2 in both arms, the split untouched, of the arm's best trial
        assert r.data.params["trainer.seed"] == "2" and r.data.params["data.seed"] == "0"
        assert r.data.tags["imbsweep.reseed_of"] == info["best"][r.data.tags["imbsweep.arm"]][1]
        assert r.data.tags["imbsweep.vary_split"] == "false"
    assert main(["compare", "small", "--reseed", "2", "--no-report", "--format", "csv"]) == 0
    assert "already has seeds 1..2" in capsys.readouterr().err  # resumable: nothing ran again
    assert main(["compare", "small", "--reseed", "1", "--vary-split", "--jobs", "2", "--format", "csv",
                 "--no-report"]) == 0
    split = csv_by_arm(capsys.readouterr().out)
    assert {a: r["seed_ids"] for a, r in split.items()} == {"plain": "1", "la": "1"}  # only the varied kind
    varied = [r for r in client.search_runs([info["experiment_id"]], max_results=1000)
              if r.data.tags.get("imbsweep.vary_split") == "true"]
    assert sorted((r.data.params["trainer.seed"], r.data.params["data.seed"]) for r in varied) == [("1", "1")] * 2
