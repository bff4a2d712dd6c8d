"""A Comparison as text: the terminal table (rich), CSV (machine columns), Markdown and HTML
(readable headers, the verdict first)."""

from __future__ import annotations

import base64
import html
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._table import COLUMNS, Comparison


def _num(v: Any, fmt: str) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _interval(m: float, lo: float, hi: float, fmt: str) -> str:
    if m != m:
        return ""
    if lo != lo:
        return format(m, fmt)
    return f"{m:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def display_frame(c: Comparison) -> Any:
    """The table for people: verdict first, rounded, intervals as ``mean [low, high]``."""
    import pandas as pd

    t = c.table
    base = c.baseline or "baseline"
    short_test = "paired t" if c.test == "t" else "Wilcoxon"
    vs_best = {"best": "best", "tied": "tied with best", "behind": ""}
    out = pd.DataFrame({
        "verdict": list(t["verdict"]),
        "vs best": [vs_best.get(v, "") for v in t["vs_best"]],
        "arm": list(t["arm"]),
        "trials": list(t["trials"]),
        "done": list(t["complete"]), "pruned": list(t["pruned"]), "failed": list(t["failed"]),
        "best val": [_num(v, ".4f") for v in t["best_val"]],
        "trial": ["" if pd.isna(v) else str(int(v)) for v in t["best_trial"]],
        "under-tuned": ["" if pd.isna(v) else ("yes" if v else "no") for v in t["under_tuned"]],
        "seeds": list(t["seeds"]),
        f"{c.test_metric} mean [95% CI]": [_interval(m, lo, hi, ".4f") for m, lo, hi in
                                           zip(t["mean"], t["ci_low"], t["ci_high"], strict=True)],
        f"Δ vs {base} [95% CI]": [_interval(m, lo, hi, "+.4f") for m, lo, hi in
                                  zip(t["delta"], t["delta_ci_low"], t["delta_ci_high"], strict=True)],
        f"p ({short_test})": [_num(v, ".3g") for v in t["p"]],
        "p Holm": [_num(v, ".3g") for v in t["p_holm"]],
        "P(better)": [_num(v, ".2f") for v in t["p_improve"]],
        "config": list(t["config"]),
    })
    return out


def to_csv(c: Comparison) -> str:
    """The machine columns (``COLUMNS``), full precision; ``seed_values`` in seed order."""
    return str(c.table[list(COLUMNS)].to_csv(index=False))


def _lines(c: Comparison) -> list[str]:
    out = [c.conclusion]
    if c.warning:
        out.append(f"warning: {c.warning}")
    if not c.replicated:
        out.append(f"no seed replicates yet, so no intervals: imbsweep compare {c.study} --reseed 5")
    return out


def to_markdown(c: Comparison) -> str:
    table = display_frame(c).to_markdown(index=False, disable_numparse=True)
    return "\n\n".join([f"**{_lines(c)[0]}**", *_lines(c)[1:], table, c.note + "."]) + "\n"


def print_table(c: Comparison, file: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    out = file or sys.stdout
    console = Console(file=out) if out.isatty() else Console(file=out, width=220)
    df = display_frame(c)
    dirn = "higher" if c.direction == "maximize" else "lower"
    table = Table(title=f"study {c.study}: arms by {c.test_metric} over paired seeds ({dirn} is better); "
                        f"best trial picked on {c.metric}")
    for col in df.columns:
        table.add_column(col, justify="left" if col in ("verdict", "vs best", "arm", "config") else "right",
                         overflow="fold")
    for _, r in df.iterrows():
        table.add_row(*(str(v) for v in r))
    console.print(table)
    console.print(c.note + ".", style="dim")
    if c.warning:
        console.print(f"warning: {c.warning}", style="yellow")
    if not c.replicated:
        console.print(f"no seed replicates yet, so no intervals: imbsweep compare {c.study} --reseed 5",
                      style="yellow")
    else:
        console.print(c.conclusion, style="bold")


def to_html(c: Comparison, images: Sequence[Path]) -> str:
    table = display_frame(c).to_html(index=False, border=0, classes="cmp")
    imgs = "\n".join(f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,'
                     f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{html.escape(p.name)}'
                     f"</figcaption></figure>" for p in images)
    lines = "\n".join(f"<p>{'<b>' if i == 0 else ''}{html.escape(s)}{'</b>' if i == 0 else ''}</p>"
                      for i, s in enumerate(_lines(c)))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>imbsweep: study {html.escape(c.study)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table.cmp{{border-collapse:collapse;font-size:13px}}
table.cmp td,table.cmp th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}}
figure{{display:inline-block;margin:1em}} img{{max-width:100%}}</style></head><body>
<h1>Study {html.escape(c.study)}</h1>
<p>Best configuration of each arm picked on validation <code>{html.escape(c.metric)}</code>
({c.direction}); reported: <code>{html.escape(c.test_metric)}</code> over paired seeds.</p>
{lines}
{table}
<p>{html.escape(c.note)}.</p>
{imgs}
</body></html>
"""
