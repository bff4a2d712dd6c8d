"""``examples/``: a user's own Hydra app (examples/digits_app: a PyTorch MLP of its own, trained
in its own loop with one of imbsweep's losses) through the whole tournament as docs/own_app.md tells:
the sweep with 2 workers, ``compare --reseed 3``, ``export``, and a re-run of the exported
config that gives the trial's value again. Run on a copy, so the example stays as it is."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imbsweep._paths import PROJECT_ROOT
from tests.helpers.cli import cli_env, csv_by_arm, run_cli
from tests.helpers.stores import finished, local_study, parent_and_children

EXAMPLE = PROJECT_ROOT / "examples" / "digits_app"
ARMS = ("ce", "ce_weighted", "focal", "logit_adjusted")


@pytest.fixture
def example(tmp_path: Path) -> Path:
    app = tmp_path / "digits_app"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("best", "multirun", "outputs", "mlruns"))
    return app


@pytest.mark.slow  # (~45 s on 2 cores: make test-all; make test keeps a user's app's tournament, post-hoc arm
# and compare in tests/sweep/test_any_app.py)
def test_the_example_app_runs_the_tournament_compare_and_export(example: Path) -> None:
    train = [sys.executable, "train.py"]
    p = subprocess.run([*train, "-m", "+sweep=tournament", "epochs=3", "hydra.sweeper.trials_per_arm=3",
                        "hydra.sweeper.n_jobs=2"], cwd=example, env=cli_env(), capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    studies = {arm: local_study(example, f"digits_tournament/{arm}") for arm in ARMS}
    assert all(len(finished(s)) == 3 for s in studies.values())  # an equal budget, exactly
    _, runs = parent_and_children(example, "digits_tournament")
    assert len(runs) == 12 and {r.data.tags["imbsweep.arm"] for r in runs} == set(ARMS)
    returned = {t.user_attrs["mlflow_run_id"]: t.value for s in studies.values() for t in s.trials}
    for r in runs:  # the returned best epoch's value is the run's, though its curve ends at the last epoch
        assert r.data.metrics["val/balanced_acc"] == pytest.approx(returned[r.info.run_id])
    # (whether the second worker gets a trial before the first has run all 12 depends on the machine's
    # load: that workers run the user's program is test_any_app's, on trials long enough to share)

    c = run_cli(example, "compare", "digits_tournament", "--reseed", "3", "--format", "csv", "--no-report",
                timeout=600)
    assert c.returncode == 0, c.stderr[-3000:]
    rows = csv_by_arm(c.stdout)
    assert set(rows) == set(ARMS) and rows["ce"]["verdict"] == "baseline"
    assert all(r["seeds"] == "3" and r["seed_ids"] == "1 2 3" for r in rows.values())  # paired on seeds 1..3
    _, runs = parent_and_children(example, "digits_tournament")
    reseeds = [r for r in runs if r.data.tags.get("imbsweep.role") == "reseed"]
    assert len(reseeds) == 12 and {r.data.params["seed"] for r in reseeds} == {"1", "2", "3"}
    for r in reseeds:  # each re-run is its arm's best trial with the seed changed
        best = next(x for x in runs if x.info.run_id == r.data.tags["imbsweep.reseed_of"])
        assert {k: v for k, v in r.data.params.items() if k != "seed"} == \
            {k: v for k, v in best.data.params.items() if k != "seed"}

    # any metric the app logged: the same replicates, compared on their test split
    t = run_cli(example, "compare", "digits_tournament", "--metric", "test/balanced_acc", "--format", "csv",
                "--no-report")
    assert t.returncode == 0, t.stderr[-3000:]
    tested = csv_by_arm(t.stdout)
    by_run = {r.info.run_id: r for r in reseeds}
    for arm, row in tested.items():
        values = sorted(float(v) for v in row["seed_values"].split())
        mine = sorted(r.data.metrics["test/balanced_acc"] for r in by_run.values()
                      if r.data.tags["imbsweep.arm"] == arm)
        assert values == pytest.approx(mine, rel=1e-5) and row["best_val"] == rows[arm]["best_val"]  # picked on val

    e = run_cli(example, "export", "digits_tournament")
    assert e.returncode == 0, e.stderr[-3000:]
    exported = example / "conf" / "best" / "digits_tournament.yaml"
    assert exported.is_file()
    value = float(re.search(r"val/balanced_acc = ([0-9.]+)", exported.read_text()).group(1))  # type: ignore[union-attr]
    command = re.search(r"reproduce: (.*)", e.stdout).group(1).split()  # type: ignore[union-attr]
    assert command[:2] == ["python", "train.py"] and command[-1] == "+best=digits_tournament"  # as its user typed it
    assert "epochs: 3" in exported.read_text()  # the sweep's command line is part of the trial
    again = subprocess.run([sys.executable, *command[1:]], cwd=example, env=cli_env(), capture_output=True,
                           text=True, timeout=300)  # the printed command, exactly
    assert again.returncode == 0, again.stderr[-3000:]
    got = float(re.search(r"val/balanced_acc=([0-9.]+)", again.stdout).group(1))  # type: ignore[union-attr]
    assert got == pytest.approx(value, abs=5e-5)  # the same value, as the trial printed it
