"""``write_report``: the files (CSV, Markdown, HTML, PNG plots) written and logged to the study's
parent run, on the synthetic study ``syn``; the caller's matplotlib left alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imbsweep._client import make_client
from imbsweep.compare import compare, write_report
from imbsweep.results import load_study
from tests.helpers.cli import cli_env
from tests.helpers.synthetic import SynStore


def test_report_files_are_written_and_logged_to_the_parent_run(syn_store: SynStore, tmp_path: Path) -> None:
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


def test_writing_the_report_leaves_the_callers_matplotlib_backend_alone(syn_store: SynStore, tmp_path: Path) -> None:
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
