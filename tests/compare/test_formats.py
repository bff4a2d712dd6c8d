"""The comparison's table as text: Markdown ordered best first with the verdict first, the HTML
page's fold of arms without a complete trial; on the synthetic study ``syn``."""

from __future__ import annotations

import gc
import math

import pytest

from imbsweep.compare import compare
from imbsweep.results import load_study
from tests.helpers.synthetic import TRICKS, SynStore


def _md_rows(out: str) -> list[dict[str, str]]:
    lines = [line for line in out.splitlines() if line.startswith("|")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    return [dict(zip(header, (v.strip() for v in line.strip("|").split("|")), strict=True)) for line in lines[2:]]


def test_markdown_orders_a_minimized_metric_best_first(syn_store: SynStore, capsys: pytest.CaptureFixture[str],
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


def test_the_report_folds_arms_without_a_complete_trial_into_one_line(syn_store: SynStore) -> None:

    from imbsweep.compare._formats import to_html

    work, uri, info = syn_store
    c = compare(load_study("syn", uri))
    gone = str(c.table["arm"].iloc[-1])
    c.table.loc[c.table.index[-1], "best_val"] = math.nan  # as an arm whose trials were all pruned
    page = to_html(c, [])
    assert f"No complete trial (all pruned or failed), so no row: {gone}." in page
    assert f'<td class="text">{gone}</td>' not in page


@pytest.mark.parametrize("width", [80, 120])
def test_the_terminal_table_fits_the_width_with_the_conclusion_first(syn_store: SynStore, width: int,
                                                                     capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``imbsweep compare`` prints into a log at $COLUMNS: no line wider, the conclusion
    on the first line, one line per arm (verdict, arm, Δ, p Holm, P(better), vs best), the
    words explained; ``--wide`` keeps every column."""
    from imbsweep.cli import main

    work, uri, _ = syn_store
    monkeypatch.chdir(work)
    monkeypatch.setenv("COLUMNS", str(width))
    assert main(["compare", "syn", "--no-report"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= width
    c = compare(load_study("syn", uri))
    assert out.startswith(c.conclusion[:40]) and c.conclusion.startswith("On ")
    header = next(line for line in lines if line.startswith("verdict"))
    assert header.split() == ["verdict", "arm", "Δ", "vs", "ce", "[95%", "CI]", "p", "Holm", "P(better)", "vs", "best"]
    rows = lines[lines.index(header) + 2:lines.index(header) + 2 + len(TRICKS)]
    assert [r.removeprefix("no evidence").split()[0 if r.startswith("no evidence") else 1] for r in rows] \
        == list(c.table["arm"])
    la = next(r for r in rows if " logit_adjusted " in r)
    assert la.startswith("better") and "[" in la  # the interval on the arm's own line
    assert "no evidence: no difference from tuned ce" in " ".join(out.split())
    assert "config" not in header and "--wide" in out
    assert main(["compare", "syn", "--no-report", "--wide"]) == 0
    wide = capsys.readouterr().out
    assert "best val" in wide and "config" in wide and wide.startswith(c.conclusion[:40])
