"""End to end through the CLI on a real (tiny) sweep: sweep -> compare --reseed -> export ->
run +best reproduces the trial's metrics exactly -> compare again from another process."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers.cli import csv_by_arm, run_cli
from tests.helpers.stores import mlflow_client

SWEEP = ("sweep", "smoke", "trainer.epochs=2", "hydra.sweeper.n_trials=4")


def test_sweep_compare_reseed_export_and_reproduce(workdir: Path) -> None:
    p = run_cli(workdir, *SWEEP)
    assert p.returncode == 0, p.stderr
    assert "imbsweep compare smoke --reseed 5" in p.stdout  # the summary says what comes next

    p = run_cli(workdir, "compare", "smoke", "--reseed", "2", "--format", "csv")
    assert p.returncode == 0, p.stderr
    table = csv_by_arm(p.stdout)
    assert set(table) == {"ce", "ce+w=inverse"}  # smoke searches class_weights none/inverse
    for row in table.values():  # a study without arms: one row per trick, paired on seeds 1 and 2
        assert row["seeds"] == "2" and row["seed_ids"] == "1 2" and len(row["seed_values"].split()) == 2
        assert 0 <= float(row["ci_low"]) <= float(row["mean"]) <= float(row["ci_high"]) <= 1
        assert int(row["complete"]) + int(row["pruned"]) + int(row["failed"]) == int(row["trials"]) >= 1
    assert table["ce"]["delta"] == "" and table["ce"]["verdict"] == "baseline"
    assert table["ce+w=inverse"]["p"] != "" and table["ce+w=inverse"]["delta_ci_low"] != ""
    # 4 trials over 2 tricks: either comparable budgets and a verdict, or the one-line warning
    budgets = sorted(int(r["trials"]) for r in table.values())
    if budgets[1] > 2 * budgets[0] or int(table["ce"]["trials"]) < 3:
        assert "imbsweep: warning: " in p.stderr and table["ce+w=inverse"]["verdict"] == ""
    else:
        assert table["ce+w=inverse"]["verdict"] in ("better", "worse", "no evidence")

    client = mlflow_client(workdir)
    exp = client.get_experiment_by_name("smoke")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("imbsweep.role") == "parent"]
    reseeds = [r for r in runs if r.data.tags.get("imbsweep.role") == "reseed"]
    assert len(reseeds) == 4 and all(r.info.status == "FINISHED" for r in reseeds)
    for r in reseeds:
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
        of = client.get_run(r.data.tags["imbsweep.reseed_of"])
        assert of.data.tags["imbsweep.trick"] == r.data.tags["imbsweep.trick"] == r.data.tags["imbsweep.arm"]
        assert r.data.tags["imbsweep.replicate"] == r.data.params["trainer.seed"] in ("1", "2")  # the same seeds
        assert of.data.params["trainer.seed"] == "0"  # ... and not the tuning trial's
        for key, value in of.data.params.items():  # the same configuration, another seed
            if key != "trainer.seed" and not key.startswith(("tracking.", "state_dir")):
                assert r.data.params[key] == value, key
    report = workdir / "reports" / "smoke"
    assert {"report.html", "comparison.csv", "metric_by_arm.png", "per_class_recall.png",
            "tuning_curves.png"} <= {f.name for f in report.iterdir()}
    assert "compare/ce/mean" in client.get_run(parent.info.run_id).data.metrics
    assert "report/report.html" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}

    again = run_cli(workdir, "compare", "smoke", "--reseed", "2", "--format", "csv", "--no-report")
    assert again.returncode == 0 and "already has seeds 1..2" in again.stderr
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
    best_val = max(float(r["best_val"]) for r in table.values())
    assert client.get_run(trial_run.group(1)).data.metrics["val/selected/balanced_acc"] == best_val
    trial = client.get_run(trial_run.group(1)).data.metrics
    rerun = client.get_run(run_id.group(1)).data.metrics
    for key in ("val/balanced_acc", "test/balanced_acc", "test/macro_f1", "train/loss", "best_epoch"):
        assert rerun[key] == trial[key], key  # exactly, not approximately
