"""The documentation: the site built from docs/ with MkDocs in strict mode (a broken link or
anchor, a page left out of the navigation fail the build), shown to fail on such a link; the
README short, and every link in it reaching a page and a heading that exist, with the anchors
GitHub makes (the README is read on GitHub, the site's anchors are made the same way); the
one-line errors the README and docs/cli.md show, as the CLI prints them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imbsweep._paths import PROJECT_ROOT
from tests.helpers.cli import run_cli

README = PROJECT_ROOT / "README.md"
DOCS = PROJECT_ROOT / "docs"
#: issue 29: a README a newcomer reads in ten minutes; the rest is in docs/
MAX_README_LINES = 250
#: a relative Markdown link or image: ``[text](target)`` / ``![alt](target)``, the target without a scheme
LINK = re.compile(r"!?\[[^\]]*\]\((?![a-z][a-z0-9+.-]*:)([^)\s]+)\)")


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``config`` into ``site``, as ``make docs`` runs it."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner, not a warning of the build
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], cwd=config.parent, env=env, capture_output=True, text=True,
                          timeout=300)


def _pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def test_the_site_builds_in_strict_mode_with_every_page(tmp_path: Path) -> None:
    p = _mkdocs(PROJECT_ROOT / "mkdocs.yml", tmp_path / "site")
    assert p.returncode == 0, p.stderr
    assert "WARNING" not in p.stdout + p.stderr, p.stdout + p.stderr
    built = {page.stem for page in _pages()}
    assert {"index", "contributing"} <= built
    for stem in built:  # every page of docs/ became a page of the site (the nav leaves none out)
        html = tmp_path / "site" / ("index.html" if stem == "index" else f"{stem}/index.html")
        assert html.is_file(), stem
    nav = (PROJECT_ROOT / "mkdocs.yml").read_text()
    assert all(f" {page.name}\n" in nav for page in _pages())
    # the images the pages show are copied with them
    assert (tmp_path / "site" / "img" / "demo_metric_by_arm.png").is_file()


@pytest.mark.parametrize("link", ["[gone](no_such_page.md)", "[gone](sweeps.md#no-such-heading)"])
def test_a_broken_link_fails_the_strict_build(tmp_path: Path, link: str) -> None:
    """The build above would pass on a broken link if strict mode or the link checks were lost."""
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(PROJECT_ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    page = tmp_path / "docs" / "cli.md"
    page.write_text(page.read_text() + f"\n{link}\n")
    p = _mkdocs(tmp_path / "mkdocs.yml", tmp_path / "site")
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "Aborted with 1 warnings in strict mode" in out, out
    assert link.split("(")[1].rstrip(")").split("#")[-1] in out


def test_the_readme_is_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail to a page of docs/"


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of ``markdown``: the heading's text without its
    Markdown, lower case, every character but letters, digits, ``_``, ``-`` and spaces dropped,
    spaces made hyphens; a repeated one gets ``-1``, ``-2``, …; lines in fenced code are not headings."""
    anchors: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"#{1,6} +(.*?) *#*$", line)
        if not m:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1)).replace("`", "").replace("*", "")
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in anchors:
            n += 1
            candidate = f"{slug}-{n}"
        anchors.add(candidate)
    return anchors


def test_github_anchors_are_made_as_github_makes_them() -> None:
    text = "# The tricks\n## `imbsweep ui`: time to the first page\n```\n# not a heading\n```\n## The tricks\n"
    assert github_anchors(text) == {"the-tricks", "imbsweep-ui-time-to-the-first-page", "the-tricks-1"}
    assert github_anchors("## Δ vs baseline [95% CI]\n") == {"δ-vs-baseline-95-ci"}


def test_every_readme_link_reaches_a_page_and_its_heading() -> None:
    links = LINK.findall(README.read_text())
    assert any(t.startswith("docs/") for t in links)  # the README points into the docs
    for target in links:
        path, _, anchor = target.partition("#")
        file = (README.parent / path).resolve()
        assert file.exists(), f"README.md links to {target}: no such file"
        if anchor:
            assert anchor in github_anchors(file.read_text()), f"README.md links to {target}: no such heading"


def test_every_docs_page_is_reachable_from_the_readme_or_the_home_page() -> None:
    home = (DOCS / "index.md").read_text()
    linked = {Path(t.partition("#")[0]).name for t in LINK.findall(home)}
    linked |= {Path(t.partition("#")[0]).name for t in LINK.findall(README.read_text())}
    assert {page.name for page in _pages()} - {"index.md"} <= linked


def _shown_errors() -> list[tuple[str, str]]:
    """``(command, the line it prints)`` for each ``$ imbsweep …`` line the pages show, followed
    by its ``imbsweep: error: …`` line."""
    shown = []
    for page in (README, DOCS / "cli.md"):
        lines = page.read_text().splitlines()
        shown += [(cmd.removeprefix("$ "), out) for cmd, out in zip(lines, lines[1:], strict=False)
                  if cmd.startswith("$ imbsweep ") and out.startswith("imbsweep: error: ")]
    return sorted(set(shown))


def test_the_one_line_errors_the_pages_show_are_what_the_cli_prints(tmp_path: Path) -> None:
    shown = _shown_errors()
    assert len(shown) >= 2
    for cmd, line in shown:
        p = run_cli(tmp_path, *cmd.split()[1:])
        assert p.returncode == 2 and p.stderr.strip() == line, (cmd, p.stderr)
