"""End to end through the CLI on a real (tiny) sweep: sweep -> compare --reseed -> export ->
run +best reproduces the trial's metrics exactly -> compare again from another process."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from .conftest import mlflow_client, run_cli

SWEEP = ("sweep", "smoke", "trainer.epochs=2", "hydra.sweeper.n_trials=4")


def _table(stdout: str) -> dict[str, dict[str, str]]:
    return {r["trick"]: r for r in csv.DictReader(io.StringIO(stdout))}


def test_sweep_compare_reseed_export_and_reproduce(workdir: Path) -> None:
    p = run_cli(workdir, *SWEEP)
    assert p.returncode == 0, p.stderr
    assert "imbsweep compare smoke --reseed 5" in p.stdout  # the summary says what comes next

    p = run_cli(workdir, "compare", "smoke", "--reseed", "2", "--format", "csv")
    assert p.returncode == 0, p.stderr
    table = _table(p.stdout)
    assert set(table) == {"ce", "ce+w=inverse"}  # smoke searches class_weights none/inverse
    for row in table.values():
        assert row["seeds"] == "2" and float(row["95% CI ±"]) >= 0 and row["rank"] in ("1", "2")
        assert int(row["complete"]) + int(row["pruned"]) + int(row["failed"]) >= 1
    assert table["ce"]["Δ vs ce"] == "" and table["ce+w=inverse"]["p (Welch t vs ce)"] != ""

    client = mlflow_client(workdir)
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("imbsweep.role") == "parent"]
    reseeds = [r for r in runs if r.data.tags.get("imbsweep.role") == "reseed"]
    assert len(reseeds) == 4 and all(r.info.status == "FINISHED" for r in reseeds)
    for r in reseeds:
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
        of = client.get_run(r.data.tags["imbsweep.reseed_of"])
        assert of.data.tags["imbsweep.trick"] == r.data.tags["imbsweep.trick"]
        assert int(r.data.params["trainer.seed"]) > int(of.data.params["trainer.seed"])
        for key, value in of.data.params.items():  # the same configuration, another seed
            if key != "trainer.seed" and not key.startswith(("tracking.", "state_dir")):
                assert r.data.params[key] == value, key
    report = workdir / "reports" / "smoke"
    assert {"report.html", "comparison.csv", "metric_by_trick.png", "per_class_recall.png",
            "optimization_history.png"} <= {f.name for f in report.iterdir()}
    assert "report/report.html" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}

    again = run_cli(workdir, "compare", "smoke", "--reseed", "2", "--format", "csv", "--no-report")
    assert again.returncode == 0 and "already has 2 fresh seeds" in again.stderr
    assert again.stdout == p.stdout  # another process, the same store: the same table

    p = run_cli(workdir, "export", "smoke", "--out", "best")
    assert p.returncode == 0, p.stderr
    command = re.search(r"reproduce: imbsweep (run .*)", p.stdout)
    assert command is not None
    run = run_cli(workdir, *command.group(1).split())
    assert run.returncode == 0, run.stderr
    run_id = re.search(r"run ([0-9a-f]{32}) FINISHED", run.stdout)
    assert run_id is not None
    exported = (workdir / "best" / "smoke.yaml").read_text()
    trial_run = re.search(r"MLflow run ([0-9a-f]{32})", exported)  # the trial export picked
    assert trial_run is not None
    best_val = max(float(r["best val/balanced_acc"]) for r in table.values())
    assert client.get_run(trial_run.group(1)).data.metrics["val/balanced_acc"] == best_val
    trial = client.get_run(trial_run.group(1)).data.metrics
    rerun = client.get_run(run_id.group(1)).data.metrics
    for key in ("val/balanced_acc", "test/balanced_acc", "test/macro_f1", "train/loss", "best_epoch"):
        assert rerun[key] == trial[key], key  # exactly, not approximately
