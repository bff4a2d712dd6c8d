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

from ._table import COLUMNS, Comparison, posthoc_words


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


def _decimals(half_widths: Sequence[float]) -> int:
    """Decimals that show the widest interval's half-width to two significant digits (3 to 6)."""
    widest = max((abs(h) for h in half_widths if h == h and h != 0), default=0.0)
    return 3 if widest == 0 else min(6, max(3, 1 - math.floor(math.log10(widest))))


def compact_frame(c: Comparison) -> Any:
    """The table that fits 80 columns, one line per arm. With replicates: verdict, arm,
    Δ vs the baseline [95% CI], p Holm, P(better), vs best; without: what tuning found
    (trials done / pruned / failed, best validation value and its trial, under-tuned)."""
    import pandas as pd

    t = c.table
    if not c.replicated:
        return pd.DataFrame({
            "arm": list(t["arm"]),
            "trials done/pruned/failed": [f"{n}: {d}/{p}/{f}" for n, d, p, f in
                                          zip(t["trials"], t["complete"], t["pruned"], t["failed"], strict=True)],
            f"best {c.metric}": ["" if v != v else f"{v:.4f} (#{int(n)})" for v, n in
                                 zip(t["best_val"], t["best_trial"].fillna(-1), strict=True)],
            "under-tuned": ["" if pd.isna(v) else ("yes" if v else "no") for v in t["under_tuned"]],
        })
    d = _decimals([(hi - lo) / 2 for lo, hi in zip(t["delta_ci_low"], t["delta_ci_high"], strict=True)])
    fmt = f"+.{d}f"
    return pd.DataFrame({
        "verdict": list(t["verdict"]),
        "arm": list(t["arm"]),
        f"Δ vs {c.baseline or 'baseline'} [95% CI]": [_interval(m, lo, hi, fmt) for m, lo, hi in zip(
            t["delta"], t["delta_ci_low"], t["delta_ci_high"], strict=True)],
        "p Holm": [_num(v, ".2g") for v in t["p_holm"]],
        "P(better)": [_num(v, ".2f") for v in t["p_improve"]],
        "vs best": [{"best": "best", "tied": "tied"}.get(v, "") for v in t["vs_best"]],
    })


def legend(c: Comparison) -> list[str]:
    """What the compact table's words mean, in plain words."""
    base = c.baseline
    seeds = int(c.table["seeds"].max()) if c.replicated else 0
    # a metric compared downwards is said so (a loss, an error; higher is better otherwise)
    lower = [f"{c.test_metric}: lower is better."] if c.direction == "minimize" else []
    if not c.replicated:
        return [*lower, f"best {c.metric}: the arm's best tuning trial (#its number) on validation; under-tuned: "
                "its tuning curve still rose in the second half of its budget, so more trials could "
                "change its best."]
    out = list(lower)
    if base is not None and c.n_tested:
        more = f"imbsweep compare {c.study} --reseed {max(2 * seeds, 5)}"
        holm = f"corrected for the {c.n_tested} arms tested (Holm, α = {c.alpha})" if c.n_tested > 1 \
            else f"at α = {c.alpha}"
        out += [f"better / worse: beats / trails tuned {base} by more than chance on {seeds} paired seeds, {holm}.",
                f"no evidence: no difference from tuned {base} shows on {seeds} seeds; one may still exist "
                f"(more seeds: {more}).",
                f"Δ: mean difference to {base} [95% interval]; P(better): share of seeds on which the arm "
                f"beats {base}; "]
    else:
        out.append("")
    out[-1] += "tied: cannot be told apart from the best (its mean may be worse)."
    out += [f"{a} trains nothing of its own: {src}'s models after {posthoc_words(c.posthoc_kinds.get(a))}."
            for a, src in c.posthoc_arms.items()]
    return out


def print_compact(console: Any, df: Any, left: tuple[str, ...]) -> None:
    """A compact frame as a rich table (the columns ``left`` left-aligned, numbers right), then
    a blank line."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, padding=0, show_edge=False)
    for col in df.columns:
        table.add_column(col, justify="left" if col in left else "right", overflow="fold")
    for _, r in df.iterrows():
        table.add_row(*(str(v) for v in r))
    console.print(table)
    console.print()


def print_table(c: Comparison, file: Any = None, wide: bool = False) -> None:
    """The comparison on the terminal: the conclusion first, then one line per arm that fits
    the terminal's width (80 columns in a file unless ``$COLUMNS`` says more), then what the
    words mean; ``wide``: every column (at 220 columns in a file)."""
    from rich.console import Console
    from rich.table import Table

    out = file or sys.stdout
    if not wide:
        console = Console(file=out, highlight=False, markup=False)
        console.print(c.conclusion, style="bold")
        if c.warning:
            console.print(f"warning: {c.warning}", style="yellow")
        df = compact_frame(c)
        console.print()
        print_compact(console, df, ("verdict", "arm", "vs best"))
        for line in legend(c):
            console.print(line, style="dim")
        console.print("Every column (trials, best trial, means, config): --wide; "
                      "a file: --format md|csv|html.", style="dim")
        return
    console = Console(file=out, markup=False) if out.isatty() else Console(file=out, width=220, markup=False)
    df = display_frame(c)
    dirn = "higher" if c.direction == "maximize" else "lower"
    console.print(c.conclusion, style="bold")
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


#: what each figure of the report shows, by file name
CAPTIONS = {
    "metric_by_arm": "Test metric per arm: the mean over the paired seeds with its 95% interval, each "
                     "seed as a dot, and the arm's best tuning trial as a cross; the dashed line is the "
                     "baseline's mean.",
    "per_class_recall": "Test recall per class against the class's training count (head classes left, "
                        "tail classes right), for each arm's best trial.",
    "tuning_curves": "Tuning curves: the expected best validation value after n trials of each arm "
                     "(Dodge et al. 2019), with a band of ± one standard deviation; a dashed line is an "
                     "arm still rising at its last trial (under-tuned).",
}
TEXT_COLUMNS = ("verdict", "vs best", "arm")
CONCLUSION = ' class="conclusion"'


def to_html(c: Comparison, images: Sequence[Path]) -> str:
    """A page: the conclusion on top, a table with text left and numbers right that fits
    1000 px (each arm's config on a line of its own), arms without a complete trial folded
    into one line, each figure captioned with what it shows; printable."""
    frame = display_frame(c)
    empty = frame["best val"] == ""
    folded = list(frame.loc[empty, "arm"])
    frame = frame[~empty].copy()
    # narrower than the terminal's table, to fit 1000 px: the trial counts in one column, the
    # tuning trial beside its value, an interval on the line below its mean
    frame.insert(3, "trials: done / pruned / failed", [f"{t}: {d} / {p} / {f}" for t, d, p, f in zip(
        frame["trials"], frame["done"], frame["pruned"], frame["failed"], strict=True)])
    frame["best val"] = [f"{v} (#{n})" if n else v for v, n in zip(frame["best val"], frame["trial"], strict=True)]
    configs = list(frame["config"])  # on a line of its own under each arm's numbers
    frame = frame.drop(columns=["trials", "done", "pruned", "failed", "trial", "config"])

    def cell(col: str, v: object) -> str:
        text = html.escape(str(v)).replace(" [", "<br>[")
        return f'<td class="{"text" if col in TEXT_COLUMNS else "num"}">{text}</td>'

    head = "".join(f'<th class="{"text" if col in TEXT_COLUMNS else "num"}">{html.escape(str(col))}</th>'
                   for col in frame.columns)
    span = len(frame.columns) - 2
    rows = "\n".join("<tr>" + "".join(cell(col, v) for col, v in zip(frame.columns, r, strict=True)) + "</tr>"
                     + (f'<tr class="cfg"><td></td><td></td><td colspan="{span}">{html.escape(str(cfg))}</td></tr>'
                        if cfg else "")
                     for r, cfg in zip(frame.itertuples(index=False), configs, strict=True))
    table = f'<table class="cmp"><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>'
    if folded:
        table += (f"<p>No complete trial (all pruned or failed), so no row: {html.escape(', '.join(map(str, folded)))}."
                  "</p>")
    imgs = "\n".join(f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,'
                     f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>'
                     f"{html.escape(CAPTIONS.get(p.stem, p.name))}</figcaption></figure>" for p in images)
    lines = "\n".join(f"<p{CONCLUSION if i == 0 else ''}>{html.escape(s)}</p>" for i, s in enumerate(_lines(c)))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>imbsweep: study {html.escape(c.study)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;padding:0 1em;line-height:1.4;color:#222}}
p.conclusion{{font-weight:bold;font-size:1.1em}}
table.cmp{{border-collapse:collapse;font-size:12px;width:100%}}
table.cmp th,table.cmp td{{padding:3px 5px;border-bottom:1px solid #ddd;vertical-align:top}}
table.cmp th{{border-bottom:2px solid #888;white-space:normal}}
.text{{text-align:left}} .num{{text-align:right;white-space:nowrap}}
tr.cfg td{{font-size:11px;color:#555;text-align:left;padding-top:0}}
table.cmp tr:has(+ tr.cfg) td{{border-bottom:none}}
p.note{{font-size:0.9em;color:#555}}
figure{{margin:1.5em 0}} img{{max-width:100%;height:auto}} figcaption{{font-size:0.9em;color:#444}}
@media print{{body{{margin:0;max-width:none}} table.cmp{{font-size:9px}} figure{{break-inside:avoid}}}}
</style></head><body>
<h1>Study {html.escape(c.study)}</h1>
{lines}
<p>Best configuration of each arm picked on validation <code>{html.escape(c.metric)}</code>
({c.direction}); reported: <code>{html.escape(c.test_metric)}</code> over paired seeds.</p>
{table}
<p class="note">{html.escape(c.note)}.</p>
{imgs}
</body></html>
"""
