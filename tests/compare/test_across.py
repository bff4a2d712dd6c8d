"""``imbsweep compare A B C …``: the statistics across datasets against Demšar (JMLR 2006)'s
published figures and scipy, a null simulation of the verdicts' family-wise error, and the
command on tiny synthetic studies written into a real MLflow store (SQLite)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from imbsweep._client import make_client
from imbsweep.compare._across import datasets_needed, friedman, nemenyi_cd, ranks, smallest_p, wilcoxon_p
from tests.helpers.stores import mlflow_db
from tests.helpers.synthetic import make_study

#: Demšar's Table 2: AUC of C4.5 and C4.5 with m tuned (C4.5+m) on 14 datasets
C45 = [0.763, 0.599, 0.954, 0.628, 0.882, 0.936, 0.661, 0.583, 0.775, 1.000, 0.940, 0.619, 0.972, 0.957]
C45_M = [0.768, 0.591, 0.971, 0.661, 0.888, 0.931, 0.668, 0.583, 0.838, 1.000, 0.962, 0.666, 0.981, 0.978]


def test_the_wilcoxon_test_over_datasets_gives_demsar_s_worked_example() -> None:
    """§3.1.3: R+ = 93, R- = 12 (zero differences split), significant at α = 0.05 (T = 12 < 21)."""
    from scipy.stats import rankdata, wilcoxon

    d = [round(b - a, 3) for a, b in zip(C45, C45_M, strict=True)]
    r = rankdata([abs(x) for x in d])
    plus = sum(ri for ri, x in zip(r, d, strict=True) if x > 0) + sum(ri for ri, x in zip(r, d, strict=True)
                                                                     if x == 0) / 2
    assert (plus, r.sum() - plus) == (93.0, 12.0)
    p = wilcoxon_p(d)
    assert p == pytest.approx(float(wilcoxon(d, zero_method="zsplit").pvalue)) and p < 0.05
    assert wilcoxon_p([0.0, 0.0, 0.0]) == 1.0


def test_friedman_iman_davenport_and_nemenyi_give_demsar_s_published_figures() -> None:
    """§3.2.2, four variants of C4.5 on 14 datasets, mean ranks 3.143, 2.000, 2.893, 1.964:
    χ²_F = 9.28, F_F = 3.69 (> 2.85, the critical F(3, 39)), Nemenyi CD = 1.25 at α = 0.05."""
    from scipy.stats import f

    chi2, ff, p = friedman([3.143, 2.000, 2.893, 1.964], 14)
    assert round(chi2, 2) == 9.28 and round(ff, 2) == 3.69
    assert p == pytest.approx(float(f.sf(ff, 3, 39))) and p < 0.05 and f.ppf(0.95, 3, 39) == pytest.approx(2.85, 0.01)
    assert round(nemenyi_cd(4, 14), 2) == 1.25


def test_ranks_average_ties_and_follow_the_direction() -> None:
    assert ranks([[0.9, 0.8, 0.8]], "maximize") == [[1.0, 2.5, 2.5]]
    assert ranks([[0.1, 0.3, 0.2]], "minimize") == [[1.0, 3.0, 2.0]]
    # a Friedman statistic from ranks against scipy's on the same table
    from scipy.stats import friedmanchisquare

    rng = np.random.default_rng(3)
    table = rng.normal(size=(9, 4))
    r = ranks(table.tolist(), "maximize")
    mean = [float(np.mean([row[j] for row in r])) for j in range(4)]
    assert friedman(mean, 9)[0] == pytest.approx(float(friedmanchisquare(*table.T).statistic))


def test_a_verdict_needs_enough_datasets_for_the_test_to_reach_alpha() -> None:
    assert smallest_p(5) == 2 / 32 and smallest_p(6) == 2 / 64
    assert datasets_needed(1) == 6 and datasets_needed(7) == 9


def test_identical_arms_keep_the_family_wise_false_positive_rate_near_alpha() -> None:
    """A null simulation: 5 arms that are all alike on 10 datasets; any `better` or `worse`
    after Holm is a false positive. Over 1,000 repetitions the rate stays at or below 5% within
    the spread of its estimate (3 standard errors)."""
    from imbsweep.compare._stats import holm

    rng = np.random.default_rng(0)
    reps, n, k, hits = 1000, 10, 5, 0
    for _ in range(reps):
        values = rng.normal(size=(n, k))
        ps = [wilcoxon_p(list(values[:, j] - values[:, 0])) for j in range(1, k)]
        hits += any(p < 0.05 for p in holm(ps))
    rate = hits / reps
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three tournaments (one per 'dataset') with the same arms and baseline, and one with an
    arm fewer."""
    work = tmp_path_factory.mktemp("across")
    client = make_client(f"sqlite:///{mlflow_db(work)}")
    arms = {"ce": "ce", "la": "logit_adjusted", "focal": "focal"}
    for i, name in enumerate(("d1", "d2", "d3")):
        make_study(client, name, 4, work / "mlruns" / "artifacts", reseeds=3, seed=10 + i, arms=arms, baseline="ce")
    make_study(client, "short", 4, work / "mlruns" / "artifacts", reseeds=3, seed=20,
               arms={"ce": "ce", "la": "logit_adjusted"}, baseline="ce")
    return work


def test_compare_across_three_studies_prints_ranks_without_verdicts(datasets: Path,
                                                                   capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Three datasets cannot reach α with Wilcoxon over 2 arms: mean ranks and win counts,
    the reason said; the report holds the critical-difference diagram, also on each study's
    parent run; CSV has the machine columns."""
    from imbsweep.cli import main
    from imbsweep.results import load_study

    monkeypatch.chdir(datasets)
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["compare", "d1", "d2", "d3"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("Across 3 datasets of test/balanced_acc") and max(map(len, lines)) <= 80
    text = " ".join(out.split())
    assert "no verdicts: 3 datasets cannot reach α over 2 arms (the test needs 7)" in text
    assert "best mean rank: la" in text  # logit_adjusted's true mean (0.78) is the highest of the three
    header = next(line for line in lines if line.startswith("verdict"))
    assert header.split()[:5] == ["verdict", "arm", "mean", "rank", "W/T/L"]
    report = datasets / "reports" / "across-d1+d2+d3"
    assert (report / "critical_difference.png").stat().st_size > 1000 and "report:" in err
    record = load_study("d2", f"sqlite:///{mlflow_db(datasets)}")
    logged = {f.path for f in record.client.list_artifacts(record.parent_run_id, "report/across-d1+d2+d3")}
    assert "report/across-d1+d2+d3/critical_difference.png" in logged
    assert main(["compare", "d1", "d2", "d3", "--format", "csv", "--no-report"]) == 0
    csv = capsys.readouterr().out.splitlines()
    assert csv[0].startswith("arm,mean_rank,wins,ties,losses,delta_median") and csv[0].endswith("mean:d3")
    assert csv[1].startswith("la,1.0,")


@pytest.mark.parametrize(("studies", "words"), [
    (["d1", "short"], "studies 'd1' and 'short' have different arms (short lacks focal)"),
    (["d1", "d1"], "a study is named twice"),
    (["d1", "d2", "--wide"], "--wide: only for one study"),
    (["d1", "d2", "--baseline", "la"], None),
])
def test_studies_that_cannot_be_compared_across_give_one_line(datasets: Path, studies: list[str], words: str | None,
                                                              capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from imbsweep.cli import main

    monkeypatch.chdir(datasets)
    code = main(["compare", *studies, "--no-report"])
    out, err = capsys.readouterr()
    if words is None:  # another baseline, the same in each: fine
        assert code == 0 and "tuned la" in " ".join(out.split()) or "W/T/L vs la" in out
        return
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(("args", "words"), [
    (["smoke_arms", "--data", "digits_lt"], "--data='digits_lt': must name at least two different data options"),
    (["smoke_arms", "--data", "digits_lt,digits_lt"], "must name at least two different data options"),
    (["smoke_arms", "--data", "digits_lt,wine_lt", "--reseed", "1"], "--reseed=1: must be an integer >= 2"),
    (["smoke_arms", "--data", "digits_lt,wine_lt", "--nope"], "--nope: not an option of imbsweep suite"),
    (["smoke_arms"], "the following arguments are required: --data"),
])
def test_bad_suite_arguments_are_one_line_before_any_sweep(tmp_path: Path, args: list[str], words: str,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from imbsweep.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["suite", *args]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow  # (~60 s: two sweeps, their re-runs and the comparison, through the real CLI)
def test_a_suite_runs_one_study_per_data_option_then_compares_across(tmp_path: Path) -> None:
    """``imbsweep suite NAME --data A,B``: study NAME-A and NAME-B (a user's own sweep file in
    ./sweeps), their replicates, then the comparison across them; the same command again
    resumes (every study complete) and prints the same table."""
    from tests.helpers.cli import run_cli

    (tmp_path / "sweeps").mkdir()
    text = (Path(__file__).resolve().parents[2] / "src/imbsweep/conf/sweep/smoke_arms.yaml").read_text()
    (tmp_path / "sweeps" / "mini.yaml").write_text(
        text.replace("choice(32, 64)", "choice(16, 32)").replace("study_name: smoke_arms", "study_name: mini"))
    p = run_cli(tmp_path, "suite", "mini", "--data", "digits_lt,iris_lt", "--reseed", "2",
                "hydra.sweeper.trials_per_arm=3", "trainer.batch_size=16")  # (a baseline tuned on >= 3)
    assert p.returncode == 0, p.stderr
    assert "imbsweep suite: study mini-digits_lt (data=digits_lt)" in p.stderr
    assert "Across 2 datasets of test/balanced_acc" in p.stdout
    assert (tmp_path / "reports" / "across-mini-digits_lt+mini-iris_lt" / "critical_difference.png").exists()
    again = run_cli(tmp_path, "suite", "mini", "--data", "digits_lt,iris_lt", "--reseed", "2",
                    "hydra.sweeper.trials_per_arm=3", "trainer.batch_size=16")  # (a baseline tuned on >= 3)
    assert again.returncode == 0, again.stderr
    table = [line for line in p.stdout.splitlines() if line.startswith(("baseline", "  "))]
    assert table and table == [line for line in again.stdout.splitlines() if line.startswith(("baseline", "  "))]
