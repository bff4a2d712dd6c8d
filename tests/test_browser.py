"""What a person sees, in a real browser: the stock MLflow UI on a finished study and our
``report.html``, in Debian's Chromium (``apt-get install chromium``) driven by Playwright
from PyPI (its own browser download cannot work here). Screenshots land in the test's
folder. ``make test-all`` runs these."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers.cli import CLI, cli_env, run_cli
from tests.helpers.procs import free_port, start_server, stop_server, wait_for_http
from tests.helpers.stores import mlflow_db

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.fail("no system Chromium: apt-get install chromium (Playwright drives it; it downloads none)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("browser")
    p = run_cli(work, "sweep", "smoke_arms", "hydra.sweeper.study_name=seen", "~hydra.sweeper.arms.ce_weighted",
                "hydra.sweeper.pruner.name=median", "+hydra.sweeper.pruner.n_startup_trials=1",
                "+hydra.sweeper.pruner.n_warmup_steps=0")
    assert p.returncode == 0, p.stderr
    c = run_cli(work, "compare", "seen", "--reseed", "2", "--jobs", "1")
    assert c.returncode == 0, c.stderr
    return work


def test_the_mlflow_ui_opens_the_study_on_its_runs(browser: Browser, study: Path, tmp_path: Path) -> None:
    port = free_port()
    proc = start_server([*CLI, "ui", "--port", str(port), "--study", "seen"], cwd=study, env=cli_env(),
                        stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        link = proc.stdout.readline().split()[3]  # "MLflow UI: open <link> (...)"
        wait_for_http(f"http://127.0.0.1:{port}/", proc, timeout=120)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(link)
        page.get_by_text("seen (study)").wait_for(timeout=60_000)  # the runs table, with the parent run
        page.screenshot(path=str(tmp_path / "ui_runs.png"))
        text = page.inner_text("body")
        assert "matching runs" in text and "Detect Issues" not in text  # not the GenAI overview
        # MLflow 3.17 opens a run linked from the table in its GenAI view unless the global switch
        # says model training: the link set it for this page; one click makes the browser remember it
        # (docs/mlflow.md says so)
        page.get_by_text("GenAI").first.click()  # (a click on the switch already set does not store it)
        # MLflow's GenAI view may first show its one-time "Detect Issues" popover over the page
        from playwright.sync_api import Error as PlaywrightError

        got_it = page.get_by_role("button", name="Got it")
        with contextlib.suppress(PlaywrightError):
            got_it.click(timeout=5_000)
        page.get_by_text("Model training").first.click()
        page.goto(link)
        page.get_by_text("seen (study)").wait_for(timeout=60_000)
        # the trials are the parent run's children: its row's expander (left of the name) lists them
        box = page.get_by_text("seen (study)").bounding_box()
        assert box is not None
        page.mouse.click(box["x"] - 32, box["y"] + box["height"] / 2)
        page.get_by_text("ce trial-0").wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "ui_runs_expanded.png"))
        names = page.inner_text("body")
        assert all(f"{arm} trial-{n}" in names for arm in ("ce", "logit_adjusted") for n in range(3)), names
        # a trial's charts: the curves come before the selected epoch's single values
        page.get_by_text("ce trial-0").click()
        page.get_by_text("Model metrics").first.click()
        page.get_by_text("val/selected").first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "ui_run_metrics.png"))
        assert "Evaluation runs" not in page.inner_text("body")  # still the model-training view
        lines = page.inner_text("body").splitlines()
        sections = [lines[i - 1] for i in range(1, len(lines)) if lines[i].startswith("(") and lines[i].endswith(")")]
        assert sections.index("val") < sections.index("val/selected") and sections.index("train") < sections.index(
            "val/selected"), sections
        page.close()
    finally:
        stop_server(proc)


def test_the_report_fits_1000_px_without_sideways_scroll(browser: Browser, study: Path, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    page.goto((study / "reports" / "seen" / "report.html").as_uri())
    page.screenshot(path=str(tmp_path / "report_1000px.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1000
    assert page.locator("p.conclusion").inner_text().startswith("On 2 paired seeds")
    assert page.locator("figcaption").count() >= 2
    page.close()


def test_the_verdict_is_the_first_thing_on_the_study_s_page(browser: Browser, study: Path, tmp_path: Path) -> None:
    """compare writes its conclusion, one line per arm and the metric-by-arm plot as the study's
    description: at 1400 x 900 the conclusion tops the study's runs page, and one click on its
    expander shows the table and the plot without scrolling; the parent run's description
    holds the same (MLflow 3.17 places a run's description below the run's details)."""
    port = free_port()
    proc = start_server([*CLI, "ui", "--port", str(port), "--study", "seen"], cwd=study, env=cli_env(),
                        stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        link = proc.stdout.readline().split()[3]
        wait_for_http(f"http://127.0.0.1:{port}/", proc, timeout=120)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(link)
        conclusion = page.get_by_text("On 2 paired seeds of test/balanced_acc").first
        conclusion.wait_for(timeout=60_000)
        box = conclusion.bounding_box()
        assert box is not None and box["y"] < 200
        page.locator("[data-component-id='mlflow.experiment.metadata_editor.expand_button']").click()
        plot = page.locator("img[src*='metric_by_arm.png']")
        plot.wait_for(timeout=30_000)
        page.wait_for_function("document.querySelector(\"img[src*='metric_by_arm.png']\").naturalWidth > 0")
        page.screenshot(path=str(tmp_path / "ui_study_verdict.png"))
        for what in (page.get_by_text("Δ vs ce [95% CI]").first, page.get_by_text("logit_adjusted").first, plot):
            b = what.bounding_box()
            assert b is not None and b["y"] + b["height"] <= 900, what
        pixels = plot.evaluate("i => [i.naturalWidth, i.getBoundingClientRect().width]")
        assert pixels[0] <= pixels[1] + 1  # the plot fits its column, not cut on the right
        page.close()
    finally:
        stop_server(proc)
    from imbsweep.results import load_study

    record = load_study("seen", f"sqlite:///{mlflow_db(study)}")
    note = record.client.get_run(record.parent_run_id).data.tags["mlflow.note.content"]
    assert note.startswith("**On 2 paired seeds") and "| verdict" in note and "metric_by_arm.png" in note
