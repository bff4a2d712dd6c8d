"""``compare`` on synthetic tournaments written into a real MLflow store (SQLite): arms tagged as
the sweeper tags them, paired replicates, the CSV contract, verdicts recomputed from the runs
themselves, and the fairness guard."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imbsweep._client import make_client
from imbsweep._paths import PROJECT_ROOT
from imbsweep.compare import compare, display_frame, expected_max, holm
from imbsweep.results import load_study

from ..helpers.synthetic import make_study

#: arm -> trick label of tests/helpers/synthetic.TRICKS (true means: ce 0.70, logit_adjusted 0.78, focal 0.71)
ARMS = {"plain": "ce", "plain_again": "ce", "la": "logit_adjusted", "focal": "focal"}
PER_ARM, SEEDS = 5, 4
CONTRACT = ["arm", "trials", "complete", "pruned", "failed", "best_val", "best_trial", "seeds", "mean", "ci_low",
            "ci_high", "delta", "delta_ci_low", "delta_ci_high", "p", "p_holm", "p_improve", "verdict", "seed_values"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    """A launch directory whose local store holds two tournaments: ``fair`` (equal budgets,
    baseline arm ``plain``) and ``unfair`` (``la`` tuned with 3x the trials of the others)."""
    work = tmp_path_factory.mktemp("tour")
    uri = f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"
    client = make_client(uri)
    fair = make_study(client, "fair", PER_ARM, work / "mlruns" / "artifacts", reseeds=SEEDS, seed=1, arms=ARMS,
                      baseline="plain")
    make_study(client, "unfair", 3, work / "mlruns" / "artifacts", reseeds=3, seed=2,
               arms={"plain": "ce", "la": "logit_adjusted"}, budgets={"la": 9}, baseline="plain")
    yield work, uri, fair


def _compare_csv(work: Path, study: str, capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """``imbsweep compare STUDY --format csv --no-report`` in-process, from ``work``: (stdout, stderr)."""
    from imbsweep.cli import main

    monkeypatch.chdir(work)
    assert main(["compare", study, "--format", "csv", "--no-report"]) == 0
    out, err = capsys.readouterr()
    return out, err


def _csv(text: str) -> dict[str, dict[str, str]]:
    return {r["arm"]: r for r in csv.DictReader(io.StringIO(text))}


def test_a_tournament_has_one_row_per_arm_with_the_csv_contract(store, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from imbsweep.cli import main

    work, uri, info = store
    out, err = _compare_csv(work, "fair", capsys, monkeypatch)
    assert "warning" not in err
    header = out.splitlines()[0].split(",")
    assert header[:len(CONTRACT)] == CONTRACT
    table = _csv(out)
    assert set(table) == set(ARMS)  # two arms share the trick label ce: rows are arms, not tricks
    runs = make_client(uri).search_runs([info["experiment_id"]], max_results=1000)
    trials = [r for r in runs if "imbsweep.trial" in r.data.tags and "imbsweep.role" not in r.data.tags]
    replicates = [r for r in runs if r.data.tags.get("imbsweep.role") == "reseed"]
    values: dict[str, dict[int, float]] = {}
    for arm in ARMS:
        mine = [r for r in trials if r.data.tags["imbsweep.arm"] == arm]
        row = table[arm]
        assert int(row["trials"]) == PER_ARM == len(mine)
        assert sorted(int(r.data.tags["imbsweep.trial"]) for r in mine) == list(range(PER_ARM))  # per arm
        done = [r for r in mine if r.data.tags["imbsweep.state"] == "complete"]
        best = max(done, key=lambda r: (r.data.metrics["val/balanced_acc"], -int(r.data.tags["imbsweep.trial"])))
        assert float(row["best_val"]) == best.data.metrics["val/balanced_acc"]
        assert int(row["best_trial"]) == int(best.data.tags["imbsweep.trial"]) and row["run_id"] == best.info.run_id
        values[arm] = {int(r.data.tags["imbsweep.replicate"]): r.data.metrics["test/balanced_acc"]
                       for r in replicates if r.data.tags["imbsweep.reseed_of"] == best.info.run_id}
        assert row["seeds"] == str(SEEDS) and row["seed_ids"] == "1 2 3 4"
        assert [float(v) for v in row["seed_values"].split()] == pytest.approx(
            [values[arm][k] for k in (1, 2, 3, 4)], rel=1e-5)
        assert 0 <= float(row["ci_low"]) <= float(row["mean"]) <= float(row["ci_high"]) <= 1
    # the verdicts, recomputed from the runs: paired t on seeds against the parent's baseline arm
    from scipy import stats

    assert table["plain"]["verdict"] == "baseline" and table["plain"]["p"] == ""
    others = [a for a in ARMS if a != "plain"]
    base = [values["plain"][k] for k in (1, 2, 3, 4)]
    ps = []
    for arm in others:
        mine = [values[arm][k] for k in (1, 2, 3, 4)]
        diffs = [x - y for x, y in zip(mine, base, strict=True)]
        assert float(table[arm]["delta"]) == pytest.approx(statistics.fmean(diffs))
        half = stats.t.ppf(0.975, 3) * statistics.stdev(diffs) / 2
        assert float(table[arm]["delta_ci_high"]) == pytest.approx(statistics.fmean(diffs) + half)
        assert float(table[arm]["p"]) == pytest.approx(stats.ttest_rel(mine, base).pvalue)
        assert float(table[arm]["p_improve"]) == sum(d > 0 for d in diffs) / 4
        ps.append(float(table[arm]["p"]))
    for arm, p in zip(others, holm(ps), strict=True):
        assert float(table[arm]["p_holm"]) == pytest.approx(p)
        delta = float(table[arm]["delta"])
        assert table[arm]["verdict"] == ("no evidence" if p >= 0.05 else "better" if delta > 0 else "worse")
    assert table["la"]["verdict"] == "better" and table["la"]["vs_best"] == "best"  # 0.78 against 0.70
    # with Wilcoxon on 4 seeds nothing can reach 0.05 (its smallest p is 2 / 2^4): no verdict but no evidence
    assert main(["compare", "fair", "--format", "csv", "--no-report", "--test", "wilcoxon"]) == 0
    wil = _csv(capsys.readouterr().out)
    assert {wil[a]["verdict"] for a in others} == {"no evidence"}
    assert float(wil["la"]["p"]) == pytest.approx(stats.wilcoxon([values["la"][k] for k in (1, 2, 3, 4)], base).pvalue)


def test_the_baseline_comes_from_the_parent_run_or_the_command_line(store) -> None:
    _, uri, _ = store
    record = load_study("fair", uri)
    assert record.baseline_arm == "plain" and compare(record).baseline == "plain"
    c = compare(record, baseline="la")
    t = c.table.set_index("arm")
    assert t.loc["la", "verdict"] == "baseline" and t.loc["plain", "verdict"] == "worse"
    assert "Δ vs la [95% CI]" in display_frame(c).columns


def test_tuning_curves_count_every_finished_trial_of_each_arm(store) -> None:
    _, uri, _ = store
    record = load_study("fair", uri)
    c = compare(record)
    trials = record.trials
    for arm in ARMS:
        mine = trials[trials["arm"] == arm]
        done = mine[mine["state"] == "complete"]["metrics.val/balanced_acc"]
        budget = int(mine["state"].isin(["complete", "pruned", "failed"]).sum())
        mean, sd = c.curves[arm]
        # pruned and failed trials are trials too (never the best): n runs to the budget spent
        padded = list(done) + [done.min()] * (budget - len(done))
        assert len(mean) == budget and mean == pytest.approx(expected_max(padded)[0])
        assert mean[-1] == pytest.approx(done.max()) and mean == sorted(mean) and sd[-1] == pytest.approx(0, abs=1e-9)
        spread = done.max() - done.min()
        half = math.ceil(budget / 2)
        rising = len(done) < 3 or (spread > 0 and mean[-1] - mean[half - 1] > 0.05 * spread)
        assert bool(c.table.set_index("arm").loc[arm, "under_tuned"]) == rising


def test_unequal_budgets_give_a_one_line_warning_and_no_verdicts(store, capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from imbsweep.cli import main

    work, uri, _ = store
    out, err = _compare_csv(work, "unfair", capsys, monkeypatch)
    lines = [line for line in err.splitlines() if "warning" in line]
    assert len(lines) == 1 and "la: 9 trials, plain: 3" in lines[0] and "more than 2x" in lines[0]
    table = _csv(out)
    assert (table["la"]["trials"], table["plain"]["trials"]) == ("9", "3")
    assert table["la"]["verdict"] == "" and table["la"]["vs_best"] == ""  # no verdicts, no "best" either
    assert table["la"]["p"] != "" and not math.isnan(float(table["la"]["p_holm"]))  # the numbers stay
    c = compare(load_study("unfair", uri))
    assert c.warning and c.conclusion.startswith("No verdicts: budgets differ")
    assert main(["compare", "unfair", "--no-report", "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "warning: budgets differ" in md and "| better" not in md


@pytest.mark.slow  # ~80 s on 2 cores: 3 worker pools that train; tests/test_compare_cli.py covers reseed by default
def test_reseed_runs_the_same_seeds_in_every_arm_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The real replicate path (training in worker processes) on a 2-arm tournament whose
    best trials already have seed 1: ``--reseed 2`` adds only seed 2, in both arms."""
    from imbsweep.cli import main

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    client = make_client(uri)
    info = make_study(client, "small", 2, tmp_path / "mlruns" / "artifacts", reseeds=1, seed=3,
                      arms={"plain": "ce", "la": "logit_adjusted"}, baseline="plain")
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "small", "--reseed", "2", "--jobs", "2", "--format", "csv", "--no-report"]) == 0
    table = _csv(capsys.readouterr().out)
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
    split = _csv(capsys.readouterr().out)
    assert {a: r["seed_ids"] for a, r in split.items()} == {"plain": "1", "la": "1"}  # only the varied kind
    varied = [r for r in client.search_runs([info["experiment_id"]], max_results=1000)
              if r.data.tags.get("imbsweep.vary_split") == "true"]
    assert sorted((r.data.params["trainer.seed"], r.data.params["data.seed"]) for r in varied) == [("1", "1")] * 2


def test_the_config_column_shows_what_each_arm_searched() -> None:
    """From tricks.yaml's own settings: an arm's searched keys (its own search expressions
    included, the keys it fixes not), conditions decided on the run's values."""
    import yaml

    from imbsweep.compare import describe_config, searched_keys, sweep_space
    from imbsweep.compare._configs import arm_fixed
    from imbsweep.results import StudyRecord

    conf = yaml.safe_load((PROJECT_ROOT / "sweeps" / "tricks.yaml").read_text())["hydra"]["sweeper"]
    record = StudyRecord("t", "", None, "0", None, None, sweep_settings=conf)
    row = {"params.optimizer.lr": "0.01", "params.trainer.batch_size": "64", "params.optimizer.weight_decay": "1e-05",
           "params.loss.class_weights": "inverse", "params.loss.reweight_from_fraction": "0.6",
           "params.loss.label_smoothing": "0.1", "params.loss.beta": "0.999", "params.eval.posthoc_tau": "0.0",
           "tags.imbsweep.choice.loss": "ce", "tags.imbsweep.choice.resampling": "none"}
    keys = [k for k in searched_keys(sweep_space(record, "ce_drw"), row) if k not in arm_fixed(record)["ce_drw"]]
    assert describe_config(row, keys) == ("lr=0.01 batch=64 weight_decay=1e-05 class_weights=inverse smoothing=0.1 "
                                          "reweight_from_fraction=0.6")
    keys = searched_keys(sweep_space(record, "ce"), {**row, "params.loss.class_weights": "none"})
    assert keys == ["optimizer.lr", "trainer.batch_size", "optimizer.weight_decay", "loss.label_smoothing"]
    assert "loss" in arm_fixed(record)["ce_resampling"] and "resampling" not in arm_fixed(record)["ce_resampling"]
