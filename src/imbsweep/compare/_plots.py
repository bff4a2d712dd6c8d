"""The comparison's PNG plots, drawn on matplotlib Figures (never pyplot: a notebook's backend
is left alone, and pyplot's import is saved)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..results import StudyRecord, download_text
from ._across import Across
from ._table import Comparison

MAX_LINES = 6  # lines per plot that stay readable


def _axes(width: float, height: float) -> tuple[Any, Any]:
    """A figure and its one axes, made without pyplot: no global backend switch, no figure
    registry to close."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.subplots()


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    # tight_layout leaves a placeholder layout engine behind, and savefig then draws the
    # whole figure once more, with rendering off, before the real draw: same PNG without it
    fig.set_layout_engine(None)
    fig.savefig(path)


def _shown(c: Comparison) -> list[str]:
    """The first MAX_LINES arms of the table, and the baseline."""
    arms = list(c.table["arm"][:MAX_LINES])
    if c.baseline in set(c.table["arm"]) and c.baseline not in arms:
        arms.append(c.baseline)
    return arms


def plot_metric(c: Comparison, path: Path) -> None:
    """Test metric per arm: mean with its 95% interval over paired seeds, the seeds as dots,
    the tuning trial's own value as a cross."""
    df = c.table[c.table["best_test"].notna() | (c.table["seeds"] > 0)]
    n = max(len(df), 1)
    fig, ax = _axes(6.8, 1.4 + 0.4 * n)  # 680 px: the width of a study's description in the MLflow UI
    ys = list(range(n))[::-1]
    for y, (_, r) in zip(ys, df.iterrows(), strict=True):
        vals = list(r["_values"].values())
        if vals:
            ax.scatter(vals, [y] * len(vals), s=10, color="0.6", zorder=2)
        mean, lo, hi = r["mean"], r["ci_low"], r["ci_high"]
        if mean == mean:
            err = [[0.0], [0.0]] if lo != lo else [[mean - lo], [hi - mean]]
            ax.errorbar([mean], [y], xerr=err, fmt="o", color="C0", capsize=4, zorder=3)
        one = r["best_test"]
        if one == one:
            ax.scatter([one], [y], marker="x", color="C3", zorder=3)
    base = df[df["arm"] == c.baseline]
    if not base.empty and base.iloc[0]["seeds"]:
        ax.axvline(base.iloc[0]["mean"], color="0.4", ls="--", lw=1)
    labels = [f"{a} ({v})" if v and v not in ("no evidence", "baseline") else a
              for a, v in zip(df["arm"], df["verdict"], strict=True)]
    ax.set_yticks(ys, labels)
    ax.set_xlabel(c.test_metric)
    # two lines: beside long arm names one line was wider than the axes and got cut off
    ax.set_title(f"study {c.study}\no mean, 95% interval over paired seeds, · the seeds, x the tuning trial",
                 fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def plot_per_class(c: Comparison, record: StudyRecord, path: Path) -> bool:
    """Test recall per class against its training count (head -> tail), one line per arm's
    best trial (its ``per_class.csv``), for the first MAX_LINES arms and the baseline. False
    when no best trial has that artifact."""
    import io

    import pandas as pd

    fig, ax = _axes(9, 4.5)
    drawn = False
    # a post-hoc arm's best run is its source's, whose per_class.csv holds the recall before adjustment
    shown = c.table[(c.table["run_id"] != "") & c.table["arm"].isin(_shown(c))
                    & ~c.table["arm"].isin(list(record.posthoc_arms))]
    for i, (_, r) in enumerate(shown.iterrows()):
        text = download_text(record.client, str(r["run_id"]), "per_class.csv")
        if not text:
            continue
        pc = pd.read_csv(io.StringIO(text)).sort_values("train_count", ascending=False)
        if "test_recall" not in pc.columns:
            continue
        ax.plot(pc["train_count"], pc["test_recall"], marker="o", ms=3, lw=1.2, color=f"C{i % 10}",
                label=r["arm"])
        drawn = True
    if drawn:
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set(xlabel="training examples of the class (head -> tail)", ylabel="test recall",
               title=f"study {c.study}: per-class recall of each arm's best trial")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        _save(fig, path)
    return drawn


def plot_tuning_curves(c: Comparison, path: Path) -> None:
    """Per arm, the expected best validation value after n trials (Dodge et al. 2019) with a
    band of ± one standard deviation of that best; an under-tuned arm's line is dashed."""
    fig, ax = _axes(9, 4.5)
    flags = dict(zip(c.table["arm"], c.table["under_tuned"], strict=True))
    for i, arm in enumerate(_shown(c)):
        if arm not in c.curves:
            continue
        mean, sd = c.curves[arm]
        n = list(range(1, len(mean) + 1))
        color = f"C{i % 10}"
        rising = bool(flags.get(arm)) if flags.get(arm) is not None else False
        ax.plot(n, mean, color=color, lw=1.4, ls="--" if rising else "-",
                label=f"{arm} (under-tuned)" if rising else arm)
        ax.fill_between(n, [m - s for m, s in zip(mean, sd, strict=True)],
                        [m + s for m, s in zip(mean, sd, strict=True)], color=color, alpha=0.12, lw=0)
    ax.set(xlabel="trials of the arm (n; pruned and failed ones count, never the best)",
           ylabel=f"expected best {c.metric}",
           title=f"study {c.study}: expected best {c.metric} after n trials (± 1 sd)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    _save(fig, path)


def plot_cd(a: Across, path: Path) -> None:
    """Demšar's critical-difference diagram: the arms on the axis of mean ranks (1, the best,
    on the left), a thick bar under each group of arms whose mean ranks differ by less than
    the Nemenyi critical difference (drawn above the axis): they cannot be told apart."""
    t = a.table
    names, rk = [str(x) for x in t["arm"]], [float(x) for x in t["mean_rank"]]
    k = len(names)
    fig, ax = _axes(6.8, 1.6 + 0.28 * k)
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-(k + 1.5), 2.2)
    ax.axhline(0, color="0.2", lw=1)
    for x in range(1, k + 1):
        ax.plot([x, x], [0, 0.25], color="0.2", lw=1)
        ax.text(x, 0.45, str(x), ha="center", va="bottom", fontsize=8)
    ax.plot([1, 1 + a.cd], [1.5, 1.5], color="C3", lw=2)
    ax.text(1 + a.cd / 2, 1.65, f"CD {a.cd:.2f}", ha="center", va="bottom", fontsize=8, color="C3")
    for i, (name, r) in enumerate(zip(names, rk, strict=True)):
        y = -(i + 1)
        ax.plot([r, r], [0, y], color="0.5", lw=0.8)
        left = r <= (k + 1) / 2
        ax.plot([r, 0.6 if left else k + 0.4], [y, y], color="0.5", lw=0.8)
        label = f"{name} ({r:.2f})" + (" *" if name == a.baseline else "")
        ax.text(0.55 if left else k + 0.45, y + 0.12, label, ha="left" if left else "right", va="bottom",
                fontsize=8)
    groups: list[tuple[int, int]] = []
    for i in range(k):
        j = max(j for j in range(i, k) if rk[j] - rk[i] < a.cd)
        if j > i and not any(g0 <= i and j <= g1 for g0, g1 in groups):
            groups.append((i, j))
    for g, (i, j) in enumerate(groups):
        bar = -0.35 - 0.25 * g
        ax.plot([rk[i] - 0.05, rk[j] + 0.05], [bar, bar], color="C0", lw=3.5, solid_capstyle="round")
    ax.axis("off")
    ax.set_title(f"{len(a.studies)} datasets, {a.test_metric}: mean rank (1 = best; * the baseline); "
                 "a bar joins arms Nemenyi cannot tell apart", fontsize=8)
    _save(fig, path)
