"""``compare``'s table on synthetic studies written into a real MLflow store (SQLite): a plain
study (one row per trick: counts, best trial, paired statistics), tournaments with arms tagged
as the sweeper tags them, paired replicates, the CSV contract, verdicts recomputed from the
runs themselves, and the fairness guard."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imbsweep._client import make_client
from imbsweep.compare import compare, display_frame, expected_max, holm
from imbsweep.results import load_study
from tests.helpers.cli import csv_by_arm
from tests.helpers.stores import mlflow_db
from tests.helpers.synthetic import SYN_RESEEDS, TRICKS, SynStore, make_study

#: arm -> trick label of tests/helpers/synthetic.TRICKS (true means: ce 0.70, logit_adjusted 0.78, focal 0.71)
ARMS = {"plain": "ce", "plain_again": "ce", "la": "logit_adjusted", "focal": "focal"}
PER_ARM, SEEDS = 5, 4
CONTRACT = ["arm", "trials", "complete", "pruned", "failed", "best_val", "best_trial", "seeds", "mean", "ci_low",
            "ci_high", "delta", "delta_ci_low", "delta_ci_high", "p", "p_holm", "p_improve", "verdict", "seed_values"]


@pytest.fixture(scope="module")
def tournaments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynStore]:
    """A launch directory whose local store holds two tournaments: ``fair`` (equal budgets,
    baseline arm ``plain``) and ``unfair`` (``la`` tuned with 3x the trials of the others)."""
    work = tmp_path_factory.mktemp("tour")
    uri = f"sqlite:///{mlflow_db(work)}"
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


def test_a_tournament_has_one_row_per_arm_with_the_csv_contract(tournaments: SynStore,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from imbsweep.cli import main

    work, uri, info = tournaments
    out, err = _compare_csv(work, "fair", capsys, monkeypatch)
    assert "warning" not in err
    header = out.splitlines()[0].split(",")
    assert header[:len(CONTRACT)] == CONTRACT
    table = csv_by_arm(out)
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
    wil = csv_by_arm(capsys.readouterr().out)
    assert {wil[a]["verdict"] for a in others} == {"no evidence"}
    assert float(wil["la"]["p"]) == pytest.approx(stats.wilcoxon([values["la"][k] for k in (1, 2, 3, 4)], base).pvalue)


def test_the_baseline_comes_from_the_parent_run_or_the_command_line(tournaments: SynStore) -> None:
    _, uri, _ = tournaments
    record = load_study("fair", uri)
    assert record.baseline_arm == "plain" and compare(record).baseline == "plain"
    c = compare(record, baseline="la")
    t = c.table.set_index("arm")
    assert t.loc["la", "verdict"] == "baseline" and t.loc["plain", "verdict"] == "worse"
    assert "Δ vs la [95% CI]" in display_frame(c).columns


def test_tuning_curves_count_every_finished_trial_of_each_arm(tournaments: SynStore) -> None:
    _, uri, _ = tournaments
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


def test_unequal_budgets_give_a_one_line_warning_and_no_verdicts(tournaments: SynStore,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from imbsweep.cli import main

    work, uri, _ = tournaments
    out, err = _compare_csv(work, "unfair", capsys, monkeypatch)
    lines = [line for line in err.splitlines() if "warning" in line]
    assert len(lines) == 1 and "la: 9 trials, plain: 3" in lines[0] and "more than 2x" in lines[0]
    table = csv_by_arm(out)
    assert (table["la"]["trials"], table["plain"]["trials"]) == ("9", "3")
    assert table["la"]["verdict"] == "" and table["la"]["vs_best"] == ""  # no verdicts, no "best" either
    assert table["la"]["p"] != "" and not math.isnan(float(table["la"]["p_holm"]))  # the numbers stay
    c = compare(load_study("unfair", uri))
    assert c.warning and c.conclusion.startswith("No verdicts: budgets differ")
    assert main(["compare", "unfair", "--no-report", "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "warning: budgets differ" in md and "| better" not in md


def _runs(uri: str, exp_id: str) -> list[Any]:
    return make_client(uri).search_runs([exp_id], max_results=1000)


def test_compare_has_one_row_per_trick_with_counts_best_and_paired_statistics(syn_store: SynStore) -> None:
    from scipy import stats

    work, uri, info = syn_store
    c = compare(load_study("syn", uri))
    runs = _runs(uri, info["experiment_id"])
    trials = [r for r in runs if "imbsweep.trial" in r.data.tags]
    reseeds = [r for r in runs if r.data.tags.get("imbsweep.role") == "reseed"]
    t = c.table.set_index("arm")
    # a study without arms: one row per trick label, its trials counted
    assert sorted(t.index) == sorted(TRICKS) and list(t["trick"]) == list(t.index)
    by_seed = {}
    for trick in TRICKS:
        mine = [r for r in trials if r.data.tags["imbsweep.trick"] == trick]
        for state, col in (("complete", "complete"), ("pruned", "pruned"), ("failed", "failed")):
            assert t.loc[trick, col] == sum(r.data.tags["imbsweep.state"] == state for r in mine)
        assert t.loc[trick, "trials"] == len(mine)
        done = [r for r in mine if r.data.tags["imbsweep.state"] == "complete"]
        best = max(done, key=lambda r: r.data.metrics["val/balanced_acc"])
        assert t.loc[trick, "best_val"] == best.data.metrics["val/balanced_acc"]
        assert t.loc[trick, "best_trial"] == int(best.data.tags["imbsweep.trial"])
        assert t.loc[trick, "run_id"] == best.info.run_id == info["best"][trick][1]
        seeds = {int(r.data.params["trainer.seed"]): r.data.metrics["test/balanced_acc"] for r in reseeds
                 if r.data.tags["imbsweep.reseed_of"] == best.info.run_id}
        by_seed[trick] = seeds
        assert t.loc[trick, "seeds"] == SYN_RESEEDS == len(seeds)
        assert t.loc[trick, "mean"] == pytest.approx(statistics.fmean(seeds.values()))
        assert 0 <= t.loc[trick, "ci_low"] < t.loc[trick, "mean"] < t.loc[trick, "ci_high"] <= 1
    # paired on the seed: the k-th replicate of a trick against the k-th of ce
    ce = [by_seed["ce"][k] for k in sorted(by_seed["ce"])]
    others = [trick for trick in TRICKS if trick != "ce"]
    for trick in others:
        mine = [by_seed[trick][k] for k in sorted(by_seed["ce"])]
        assert t.loc[trick, "delta"] == pytest.approx(statistics.fmean(mine) - statistics.fmean(ce))
        assert t.loc[trick, "p"] == pytest.approx(stats.ttest_rel(mine, ce).pvalue, rel=1e-9)
    assert list(t.loc[others, "p_holm"]) == pytest.approx(holm(list(t.loc[others, "p"])))
    for trick in others:
        want = "no evidence" if t.loc[trick, "p_holm"] >= 0.05 else (
            "better" if t.loc[trick, "delta"] > 0 else "worse")
        assert t.loc[trick, "verdict"] == want
    assert t.loc["ce", "verdict"] == "baseline" and math.isnan(t.loc["ce", "delta"])
    assert t.loc["logit_adjusted", "verdict"] == "better"  # true mean 0.78 against 0.70, noise 0.01
    means = list(c.table["mean"])
    assert means == sorted(means, reverse=True) and c.replicated and c.warning is None
    assert c.table.iloc[0]["vs_best"] == "best" and "rank" not in c.table.columns


def test_a_trick_with_only_pruned_trials_still_gets_a_row(tmp_path: Path) -> None:
    import io

    from imbsweep.compare import display_frame, print_table, to_markdown

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = make_client(uri)
    info = make_study(client, "p", 6, tmp_path / "artifacts", tricks=("ce", "focal"))
    run = client.create_run(info["experiment_id"], tags={
        "mlflow.parentRunId": info["parent_run_id"], "imbsweep.study": "p", "imbsweep.trial": "99",
        "imbsweep.trick": "ldam", "imbsweep.state": "pruned"})
    client.set_terminated(run.info.run_id)
    c = compare(load_study("p", uri))
    row = display_frame(c).set_index("arm").loc["ldam"]
    assert (row["trial"], row["best val"], row["pruned"], row["seeds"]) == ("", "", 1, 0)
    buf = io.StringIO()
    print_table(c, buf)
    assert "ldam" in buf.getvalue() and "ldam" in to_markdown(c)
