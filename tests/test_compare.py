"""``compare`` on a synthetic study written into a real MLflow store (SQLite),
read back through the real CLI in a subprocess and in-process."""

from __future__ import annotations

import gc
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from imbsweep._client import make_client
from imbsweep.compare import compare, holm, reported_metric, t_interval, to_csv, write_report
from imbsweep.results import load_study

from .helpers.cli import cli_env, run_cli
from .helpers.synthetic import SYN_RESEEDS, TRICKS, make_study


def _runs(uri: str, exp_id: str) -> list[Any]:
    return make_client(uri).search_runs([exp_id], max_results=1000)


def test_t_interval_against_values_computed_by_hand() -> None:
    m, lo, hi = t_interval([1.0, 2.0, 3.0])
    assert m == 2.0
    assert hi - m == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # t(0.975, df=2) = 4.302653, sd 1
    assert m - lo == pytest.approx(hi - m)
    assert math.isnan(t_interval([1.0])[2]) and math.isnan(t_interval([])[0])
    assert reported_metric("val/balanced_acc") == "test/balanced_acc" and reported_metric("custom") == "custom"


def test_compare_has_one_row_per_trick_with_counts_best_and_paired_statistics(syn_store) -> None:
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


def test_compare_from_another_process_gives_the_same_table(syn_store) -> None:
    work, uri, _ = syn_store
    here = to_csv(compare(load_study("syn", uri)))
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "imbsweep", "compare", "syn",
                        "--format", "csv", "--no-report"], cwd=work, env=cli_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout == here
    # a reader of the store never loads torch (a second of start-up for nothing)
    imported = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines()}
    assert "mlflow" in imported and "torch" not in imported


def _md_rows(out: str) -> list[dict[str, str]]:
    lines = [line for line in out.splitlines() if line.startswith("|")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    return [dict(zip(header, (v.strip() for v in line.strip("|").split("|")), strict=True)) for line in lines[2:]]


def test_markdown_orders_a_minimized_metric_best_first(syn_store, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from imbsweep.cli import main

    work, _, _ = syn_store
    monkeypatch.chdir(work)
    assert main(["compare", "syn", "--format", "md", "--no-report", "--metric", "val/ece"]) == 0
    assert gc.isenabled()  # compare pauses the cyclic GC while it runs, not for its caller
    out = capsys.readouterr().out
    rows = _md_rows(out)
    assert list(rows[0])[:3] == ["verdict", "vs best", "arm"]  # the verdict first
    assert "paired t-test" in out and "Holm" in out and "Welch" not in out
    # ece is minimized: rows with replicates (the reseeds were of the balanced-accuracy bests,
    # so not every trick has them) lowest mean first, then the rest lowest best first
    mean_col = next(k for k in rows[0] if k.startswith("test/ece mean"))
    replicated = [float(r[mean_col].split()[0]) for r in rows if r["seeds"] not in ("0", "1")]
    rest = [float(r["best val"]) for r in rows if r["seeds"] in ("0", "1")]
    assert len(rows) == len(TRICKS) and replicated == sorted(replicated) and rest == sorted(rest)
    assert all(r["seeds"] not in ("0", "1") for r in rows[:len(replicated)])
    assert main(["compare", "syn", "--format", "md", "--no-report"]) == 0
    rows = _md_rows(capsys.readouterr().out)
    deltas = [r["Δ vs ce [95% CI]"] for r in rows if r["Δ vs ce [95% CI]"]]
    assert len(deltas) == len(TRICKS) - 1 and all(d[0] in "+-" for d in deltas)  # Δ keeps its sign
    by_arm = {r["arm"]: r for r in rows}
    assert by_arm["ce"]["verdict"] == "baseline" and by_arm["logit_adjusted"]["verdict"] == "better"


def test_report_files_are_written_and_logged_to_the_parent_run(syn_store, tmp_path: Path) -> None:
    work, uri, info = syn_store
    record = load_study("syn", uri)
    files = write_report(compare(record), record, tmp_path / "syn")
    names = {f.name for f in files}
    assert names == {"comparison.csv", "comparison.md", "report.html", "metric_by_arm.png",
                     "per_class_recall.png", "tuning_curves.png"}
    assert all(f.stat().st_size > 0 for f in files)
    html = (tmp_path / "syn" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "logit_adjusted" in html
    # a page: the conclusion first, text left and numbers right, figures captioned with what they show
    assert html.index('class="conclusion"') < html.index('<table class="cmp"')
    assert '<td class="text">logit_adjusted</td>' in html and '<td class="num">' in html
    assert html.count("<figcaption>") == 3 and ".png</figcaption>" not in html
    assert "<figcaption>Tuning curves: the expected best validation value" in html
    logged = {a.path for a in make_client(uri).list_artifacts(info["parent_run_id"], "report")}
    assert {f"report/{n}" for n in names} == logged
    # the result on the parent run itself: per-arm metrics and the conclusion, no file to open
    parent = make_client(uri).get_run(info["parent_run_id"]).data
    c = compare(record)
    for _, r in c.table.iterrows():
        key = r["arm"].replace("+", "_").replace("=", "_")
        assert parent.metrics[f"compare/{key}/mean"] == pytest.approx(r["mean"])
    assert parent.metrics["compare/logit_adjusted/verdict"] == 1.0
    assert parent.metrics["compare/ce_w_inverse/p_holm"] == pytest.approx(c.table.set_index("arm").loc[
        "ce+w=inverse", "p_holm"])
    assert parent.tags["imbsweep.compare.conclusion"] == c.conclusion and "logit_adjusted" in c.conclusion


def test_writing_the_report_leaves_the_callers_matplotlib_backend_alone(syn_store, tmp_path: Path) -> None:
    # a notebook calling write_report keeps its inline backend: no matplotlib.use, no pyplot
    _, uri, _ = syn_store
    code = ("import sys, matplotlib; matplotlib.use('pdf')\n"
            "from pathlib import Path\n"
            "from imbsweep.compare import compare, write_report\n"
            "from imbsweep.results import load_study\n"
            f"r = load_study('syn', {uri!r})\n"
            f"write_report(compare(r), r, Path({str(tmp_path / 'syn')!r}), log_to_parent=False)\n"
            "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["pdf", "False"]
    assert (tmp_path / "syn" / "tuning_curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("args", "message"), [
    (("compare", "nosuch"), "study 'nosuch': not in the MLflow store"),
    (("compare", "syn", "--metric", "val/nosuch"), "--metric='val/nosuch': never logged in study 'syn'"),
    (("compare", "syn", "--reseed", "0"), "--reseed=0: must be an integer >= 1"),
    (("export", "nosuch"), "known studies: syn"),
    (("export", "syn", "--top-k", "0"), "--top-k=0: must be an integer >= 1"),
    (("export", "syn", "--trick", "nosuch"), "--trick='nosuch': no complete trial of study 'syn' used it"),
    (("compare", "syn", "--baseline", "nosuch"),
     "--baseline='nosuch': not an arm of study 'syn'; arms: balanced_softmax, ce, ce+w=inverse, focal, logit_adjusted"),
    (("export", "syn", "--arm", "ce"), "--arm='ce': no complete trial of study 'syn' used it; arms: none"),
])
def test_bad_input_is_one_line_naming_the_value(syn_store, args: tuple[str, ...], message: str,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from imbsweep.cli import main

    work, _, _ = syn_store
    monkeypatch.chdir(work)  # the CLI's own code in-process; the subprocess case is below
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_input_through_the_installed_command(syn_store) -> None:
    work, _, _ = syn_store
    p = run_cli(work, "compare", "nosuch")
    assert p.returncode == 2 and p.stderr.startswith("imbsweep: error: study 'nosuch'")
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_unwritable_report_dir_and_out_are_clear_errors(syn_store, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from imbsweep.cli import main

    work, _, _ = syn_store
    monkeypatch.chdir(work)
    (work / "a_file").write_text("")
    for args in (("compare", "syn", "--report-dir", "a_file"), ("export", "syn", "--out", "a_file/best")):
        assert main(list(args)) == 2
        err = capsys.readouterr().err
        assert "cannot write" in err and "a_file" in err and "Traceback" not in err, err


def test_a_study_without_finished_trials_and_an_empty_store_are_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from imbsweep.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["compare", "syn"]) == 2 and "no MLflow store" in capsys.readouterr().err
    client = make_client(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    exp = client.create_experiment("fresh")
    client.create_run(exp, tags={"imbsweep.role": "parent", "imbsweep.study": "fresh"})
    client.create_run(exp, tags={"imbsweep.study": "fresh", "imbsweep.trial": "0", "imbsweep.state": "running"})
    for command in ("export", "compare"):
        assert main([command, "fresh"]) == 2
        assert "study 'fresh' has no finished trials yet" in capsys.readouterr().err


def test_reseed_plans_only_the_missing_seeds_of_the_top_arms_and_the_baseline(syn_store) -> None:
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


def test_the_report_folds_arms_without_a_complete_trial_into_one_line(syn_store) -> None:
    import math

    from imbsweep.compare._formats import to_html

    work, uri, info = syn_store
    c = compare(load_study("syn", uri))
    gone = str(c.table["arm"].iloc[-1])
    c.table.loc[c.table.index[-1], "best_val"] = math.nan  # as an arm whose trials were all pruned
    page = to_html(c, [])
    assert f"No complete trial (all pruned or failed), so no row: {gone}." in page
    assert f'<td class="text">{gone}</td>' not in page
