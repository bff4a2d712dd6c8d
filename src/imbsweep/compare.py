"""``imbsweep compare STUDY``: which trick, how much better, how sure.

One row per trick (the ``imbsweep.trick`` tag): its trials complete / pruned / failed, the
best validation value and the configuration that gave it, that trial's test value; then,
over the fresh seed replicates of that configuration (``--reseed K`` makes them, as child
runs tagged ``imbsweep.role=reseed``), the test metric's mean, standard deviation and 95%
confidence interval (Student t), the rank by that mean, and the difference to the baseline
trick (plain ``ce``) with Welch's t-test p-value. The lucky best trial itself never enters
the interval: it was selected on validation, and its seed is part of that luck.
"""

from __future__ import annotations

import base64
import html
import math
import os
import statistics
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ImbsweepError
from .results import RESEED_OF, ROLE, STUDY, StudyRecord, best_runs, choices_of, download_text

#: params never shown as "the configuration" (they name the trick, or are plumbing)
NOT_CONFIG = ("loss.name", "loss.class_weights", "resampling.name", "trainer.num_threads", "trainer.seed",
              "tracking.", "state_dir", "data.", "model._target_", "loss._target_", "optimizer._target_",
              "scheduler._target_")
_SHORT = {"loss.reweight_from_epoch": "drw_from"}  # beside trick.SHORT_KEYS
TEST_NOTE = ("best val: {metric} of the trick's best trial; test (trial): that trial's {test}; "
             "test mean ± 95% CI: Student t over fresh seeds of that configuration (the tuning trial "
             "itself excluded); p: Welch's two-sided t-test against {baseline}")


def short(key: str) -> str:
    from .trick import short_key

    return short_key(key, _SHORT)


def reported_metric(metric: str) -> str:
    """``val/balanced_acc`` -> ``test/balanced_acc`` (what the comparison reports)."""
    return "test/" + metric[len("val/"):] if metric.startswith("val/") else metric


def ci95(xs: Sequence[float]) -> tuple[float, float, float]:
    """(mean, standard deviation, half-width of the 95% Student-t interval); NaN below 2."""
    from scipy.special import stdtrit  # the t quantile; scipy.stats alone takes ~1.5 s to import

    if not xs:
        return math.nan, math.nan, math.nan
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, math.nan, math.nan
    sd = statistics.stdev(xs)
    return m, sd, float(stdtrit(len(xs) - 1, 0.975) * sd / math.sqrt(len(xs)))


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Welch t-test p-value (unequal variances, Welch-Satterthwaite df), as
    ``scipy.stats.ttest_ind(a, b, equal_var=False)``; NaN when a side has fewer than 2 values."""
    from scipy.special import stdtr

    if len(a) < 2 or len(b) < 2:
        return math.nan
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if va + vb == 0:
        return 1.0 if diff == 0 else 0.0
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(2 * stdtr(df, -abs(t)))


def varying_params(trials: Any) -> list[str]:
    """The params whose value differs between the study's trials: what was searched."""
    out = []
    for col in trials.columns:
        if not col.startswith("params."):
            continue
        key = col[len("params."):]
        if key.startswith(NOT_CONFIG) or key in NOT_CONFIG:
            continue
        if trials[col].dropna().nunique() > 1:
            out.append(key)
    return out


def sweep_space(record: StudyRecord) -> Any:
    """The study's search space, from its parent run's ``sweep.yaml``; None without one."""
    import yaml

    from .sweep._space import SearchSpace

    text = download_text(record.client, record.parent_run_id, "sweep.yaml") if record.parent_run_id else None
    conf = yaml.safe_load(text or "") or {}
    if not conf.get("params") and not conf.get("conditional"):
        return None
    try:
        return SearchSpace.build(conf.get("params"), conf.get("conditional"))
    except ImbsweepError:
        return None


def searched_keys(space: Any, row: Mapping[str, Any]) -> list[str]:
    """The keys the sweep sampled for this run: its unconditional params, and the
    conditional ones whose condition held (group keys such as ``loss`` name the trick)."""
    import yaml

    groups = choices_of(row)

    def value(key: str) -> Any:
        if key in groups:
            return groups[key]
        raw = row.get(f"params.{key}")
        return yaml.safe_load(raw) if isinstance(raw, str) else raw

    known = {**space.fixed_for_conditions, **space.fixed, **{k: value(k) for k in space.params}}
    keys = list(space.params)
    for key, cond in space.conditional.items():
        if cond.active(known):
            known[key] = value(key)
            keys.append(key)
    return [k for k in keys if k not in groups and k not in NOT_CONFIG and not k.startswith(NOT_CONFIG)]


def describe_config(row: Mapping[str, Any], keys: Sequence[str]) -> str:
    """``lr=0.0031 batch=128 tau=1.2``: the searched values of one run."""
    parts = []
    for key in keys:
        v = row.get(f"params.{key}")
        if v is None or (isinstance(v, float) and math.isnan(v)) or v in ("None", "null"):
            continue
        try:
            f = float(v)
            text = v if f.is_integer() and "." not in str(v) else f"{f:.3g}"
        except (TypeError, ValueError):
            text = str(v)
        parts.append(f"{short(key)}={text}")
    return " ".join(parts)


@dataclass
class Comparison:
    study: str
    metric: str
    direction: str
    test_metric: str
    baseline: str
    table: Any  # pandas.DataFrame, one row per trick, best first
    replicated: bool  # some trick has >= 2 fresh seeds

    @property
    def note(self) -> str:
        return TEST_NOTE.format(baseline=self.baseline, metric=self.metric, test=self.test_metric)


def compare(record: StudyRecord, metric: str | None = None, baseline: str = "ce") -> Comparison:
    """The per-trick table of a study (see the module docstring)."""
    import pandas as pd

    metric, direction = record.metric_direction(metric)
    test = reported_metric(metric)
    col, tcol = f"metrics.{metric}", f"metrics.{test}"
    trials = record.trials
    space = sweep_space(record)
    varying = varying_params(trials) if space is None else []
    best = best_runs(record, metric, direction).set_index("trick")
    reseeds = record.reseeds
    done_reseeds = reseeds[reseeds["state"] == "complete"] if not reseeds.empty else reseeds
    rows = []
    for trick, group in trials.groupby("trick", sort=False):
        row: dict[str, Any] = {
            "trick": trick,
            "complete": int((group["state"] == "complete").sum()),
            "pruned": int((group["state"] == "pruned").sum()),
            "failed": int((group["state"] == "failed").sum()),
        }
        values: list[float] = []
        if trick in best.index:
            b = best.loc[trick]
            row.update({f"best {metric}": float(b[col]), "trial": int(b["trial"]),
                        f"{test} (that trial)": float(b.get(tcol, math.nan)),
                        "config": describe_config(b, varying if space is None else searched_keys(space, b)),
                        "run_id": b["run_id"]})
            if not done_reseeds.empty and f"tags.{RESEED_OF}" in done_reseeds.columns:
                mine = done_reseeds[done_reseeds[f"tags.{RESEED_OF}"] == b["run_id"]]
                if tcol in mine.columns:
                    values = [float(v) for v in mine[tcol].dropna()]
        m, sd, half = ci95(values)
        row.update({"seeds": len(values), f"mean {test}": m, "std": sd, "95% CI ±": half, "_values": values})
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in (f"best {metric}", "trial", f"{test} (that trial)", "config", "run_id"):
        if c not in df.columns:
            df[c] = None
    df["config"] = df["config"].fillna("")
    base_vals: list[float] = next((r["_values"] for r in rows if r["trick"] == baseline), [])
    base_mean = statistics.fmean(base_vals) if base_vals else math.nan
    df[f"Δ vs {baseline}"] = [(statistics.fmean(v) - base_mean) if v and r != baseline else math.nan
                              for r, v in zip(df["trick"], df["_values"], strict=True)]
    df[f"p (Welch t vs {baseline})"] = [welch_p(v, base_vals) if r != baseline else math.nan
                                        for r, v in zip(df["trick"], df["_values"], strict=True)]
    sign = direction == "minimize"
    mean_col = f"mean {test}"
    df["rank"] = df[mean_col].where(df["seeds"] >= 2).rank(ascending=sign, method="min").astype("Int64")
    df = df.sort_values(["rank", f"best {metric}"], ascending=[True, sign], na_position="last")
    replicated = bool((df["seeds"] >= 2).any())
    order = ["rank", "trick", "complete", "pruned", "failed", f"best {metric}", "trial",
             f"{test} (that trial)", "seeds", mean_col, "std", "95% CI ±", f"Δ vs {baseline}",
             f"p (Welch t vs {baseline})", "config", "run_id", "_values"]
    return Comparison(record.name, metric, direction, test, baseline, df[order].reset_index(drop=True),
                      replicated)


# -- output ----------------------------------------------------------------------------------------
def display_frame(c: Comparison) -> Any:
    """The table for people: rounded, ``mean ± CI`` in one column, no run ids."""
    import pandas as pd

    df = c.table.drop(columns=["_values", "run_id"]).copy()
    mean_col = f"mean {c.test_metric}"
    df[f"{c.test_metric} mean ± 95% CI"] = [
        "" if n == 0 else (f"{m:.4f}" if n < 2 else f"{m:.4f} ± {h:.4f}")
        for m, h, n in zip(df[mean_col], df["95% CI ±"], df["seeds"], strict=True)]
    df = df.drop(columns=[mean_col, "95% CI ±"])
    df["rank"] = ["" if pd.isna(r) else str(int(r)) for r in df["rank"]]
    df["trial"] = ["" if pd.isna(v) else str(int(v)) for v in df["trial"]]
    for col in df.columns:
        if df[col].dtype.kind == "f":
            digits = 3 if col.startswith("p (") else 4
            df[col] = [("" if v != v else (f"{v:+.{digits}f}" if col.startswith("Δ") else f"{v:.{digits}g}"
                        if col.startswith("p (") else f"{v:.{digits}f}")) for v in df[col]]
    names = {"complete": "done", f"best {c.metric}": "best val", "trial": "trial",
             f"{c.test_metric} (that trial)": "test (trial)", "seeds": "seeds",
             f"{c.test_metric} mean ± 95% CI": "test mean ± 95% CI", "std": "std",
             f"Δ vs {c.baseline}": f"Δ vs {c.baseline}", f"p (Welch t vs {c.baseline})": "p (Welch)"}
    cols = ["rank", "trick", "complete", "pruned", "failed", *list(names)[1:], "config"]
    return df[cols].rename(columns=names)


def to_csv(c: Comparison) -> str:
    df = c.table.copy()
    df["seed_values"] = [" ".join(f"{v:.6g}" for v in vs) for vs in df.pop("_values")]
    return str(df.to_csv(index=False))


def to_markdown(c: Comparison) -> str:
    return f"{display_frame(c).to_markdown(index=False, disable_numparse=True)}\n\n{c.note}.\n"


def print_table(c: Comparison, file: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    out = file or sys.stdout
    console = Console(file=out) if out.isatty() else Console(file=out, width=200)
    df = display_frame(c)
    dirn = "higher" if c.direction == "maximize" else "lower"
    table = Table(title=f"study {c.study}: tricks by {c.test_metric} over fresh seeds ({dirn} is better); "
                        f"best picked on {c.metric}")
    for col in df.columns:
        table.add_column(col, justify="left" if col in ("trick", "config") else "right",
                         overflow="fold")
    for _, r in df.iterrows():
        table.add_row(*(str(v) for v in r))
    console.print(table)
    console.print(c.note + ".", style="dim")
    if not c.replicated:
        console.print(f"no seed replicates yet, so no CI: imbsweep compare {c.study} --reseed 5",
                      style="yellow")


# -- plots and the report --------------------------------------------------------------------------
def _axes(width: float, height: float) -> tuple[Any, Any]:
    """A figure and its one axes, made without pyplot: no global backend switch (a notebook
    that calls this keeps its own), no figure registry to close, and pyplot's import saved."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.subplots()


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    # tight_layout leaves a placeholder layout engine behind, and savefig then draws the
    # whole figure once more, with rendering off, before the real draw: same PNG without it
    fig.set_layout_engine(None)
    fig.savefig(path)


def plot_metric(c: Comparison, path: Path) -> None:
    """Test metric per trick: mean with 95% CI bars over fresh seeds, the seeds as dots, the
    tuning trial's own value as a cross."""
    df = c.table[c.table[f"{c.test_metric} (that trial)"].notna() | (c.table["seeds"] > 0)]
    n = max(len(df), 1)
    fig, ax = _axes(8, 1.4 + 0.4 * n)
    ys = list(range(n))[::-1]
    for y, (_, r) in zip(ys, df.iterrows(), strict=True):
        vals = r["_values"]
        if vals:
            ax.scatter(vals, [y] * len(vals), s=10, color="0.6", zorder=2)
        mean, half = r[f"mean {c.test_metric}"], r["95% CI ±"]
        if mean == mean:
            ax.errorbar([mean], [y], xerr=[[0 if half != half else half]] * 2, fmt="o", color="C0",
                        capsize=4, zorder=3)
        one = r[f"{c.test_metric} (that trial)"]
        if one is not None and one == one:
            ax.scatter([one], [y], marker="x", color="C3", zorder=3)
    base = df[df["trick"] == c.baseline]
    if not base.empty and base.iloc[0]["seeds"]:
        ax.axvline(base.iloc[0][f"mean {c.test_metric}"], color="0.4", ls="--", lw=1)
    ax.set_yticks(ys, list(df["trick"]))
    ax.set_xlabel(c.test_metric)
    # two lines: beside long trick names one line was wider than the axes and got cut off
    ax.set_title(f"study {c.study}\no mean ± 95% CI over fresh seeds, · the seeds, x the tuning trial",
                 fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def plot_per_class(c: Comparison, record: StudyRecord, path: Path) -> bool:
    """Test recall per class against its training count (head -> tail), one line per trick's
    best trial (its ``per_class.csv``), for the first ``MAX_LINES`` tricks of the table and the
    baseline. False when no best trial has that artifact."""
    import io

    import pandas as pd

    fig, ax = _axes(9, 4.5)
    drawn = False
    shown = c.table[c.table["run_id"].notna()]
    shown = shown[shown.index.isin(shown.index[:MAX_LINES]) | (shown["trick"] == c.baseline)]
    for i, (_, r) in enumerate(shown.iterrows()):
        text = download_text(record.client, str(r["run_id"]), "per_class.csv")
        if not text:
            continue
        pc = pd.read_csv(io.StringIO(text)).sort_values("train_count", ascending=False)
        if "test_recall" not in pc.columns:
            continue
        ax.plot(pc["train_count"], pc["test_recall"], marker="o", ms=3, lw=1.2, color=f"C{i % 10}",
                label=r["trick"])
        drawn = True
    if drawn:
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set(xlabel="training examples of the class (head -> tail)", ylabel="test recall",
               title=f"study {c.study}: per-class recall of each trick's best trial")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        _save(fig, path)
    return drawn


MAX_LINES = 6  # lines per plot that stay readable


def plot_history(c: Comparison, record: StudyRecord, path: Path) -> None:
    """Best validation value so far against trial number, one line per trick."""
    col = f"metrics.{c.metric}"
    done = record.trials[(record.trials["state"] == "complete") & record.trials[col].notna()]
    fig, ax = _axes(9, 4.5)
    tricks = list(c.table["trick"][:MAX_LINES])
    if c.baseline in set(c.table["trick"]) and c.baseline not in tricks:
        tricks.append(c.baseline)
    ax.scatter(done["trial"], done[col], s=7, color="0.8", label="every trial")
    for i, trick in enumerate(tricks):
        t = done[done["trick"] == trick].sort_values("trial")
        if t.empty:
            continue
        best = t[col].cummax() if c.direction == "maximize" else t[col].cummin()
        color = f"C{i % 10}"
        ax.scatter(t["trial"], t[col], s=9, color=color, alpha=0.5)
        ax.step(list(t["trial"]) + [int(done["trial"].max())], list(best) + [best.iloc[-1]],
                where="post", color=color, lw=1.3, label=trick)
    ax.set(xlabel="trial", ylabel=c.metric, title=f"study {c.study}: best {c.metric} so far, per trick")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    _save(fig, path)


def to_html(c: Comparison, images: Sequence[Path]) -> str:
    table = display_frame(c).to_html(index=False, border=0, classes="cmp")
    imgs = "\n".join(f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,'
                     f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{html.escape(p.name)}'
                     f"</figcaption></figure>" for p in images)
    hint = "" if c.replicated else (f"<p><b>No seed replicates yet, so no CI:</b> "
                                    f"<code>imbsweep compare {html.escape(c.study)} --reseed 5</code></p>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>imbsweep: study {html.escape(c.study)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table.cmp{{border-collapse:collapse;font-size:13px}}
table.cmp td,table.cmp th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}}
figure{{display:inline-block;margin:1em}} img{{max-width:100%}}</style></head><body>
<h1>Study {html.escape(c.study)}</h1>
<p>Best configuration of each trick picked on validation <code>{html.escape(c.metric)}</code>
({c.direction}); reported: <code>{html.escape(c.test_metric)}</code>.</p>
{table}
<p>{html.escape(c.note)}.</p>
{hint}
{imgs}
</body></html>
"""


def write_report(c: Comparison, record: StudyRecord, out_dir: Path, log_to_parent: bool = True) -> list[Path]:
    """``comparison.csv``, ``comparison.md``, the PNG plots and ``report.html`` (plots
    embedded) in ``out_dir``, also logged under ``report/`` of the study's parent run."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ImbsweepError(f"--report-dir={str(out_dir.parent)!r}: cannot write {out_dir} "
                            f"({exc.strerror or exc})") from None
    (out_dir / "comparison.csv").write_text(to_csv(c))
    (out_dir / "comparison.md").write_text(to_markdown(c))
    images = [out_dir / "metric_by_trick.png"]
    plot_metric(c, images[0])
    if plot_per_class(c, record, out_dir / "per_class_recall.png"):
        images.append(out_dir / "per_class_recall.png")
    plot_history(c, record, out_dir / "optimization_history.png")
    images.append(out_dir / "optimization_history.png")
    (out_dir / "report.html").write_text(to_html(c, images))
    files = [out_dir / n for n in ("comparison.csv", "comparison.md", "report.html")] + images
    if log_to_parent and record.parent_run_id:
        record.client.log_artifacts(record.parent_run_id, str(out_dir), "report")
    return files


# -- seed replicates --------------------------------------------------------------------------------
@dataclass
class ReseedJob:
    trick: str
    run_id: str
    trial: int
    seed: int
    config_yaml: str
    choices: dict[str, str]
    uri: str
    state: str
    experiment_id: str
    parent_run_id: str | None
    study: str
    threads: int | None


def reseed_jobs(record: StudyRecord, metric: str, direction: str, k: int, state: str | os.PathLike[str],
                threads: int | None, top: int | None = None, baseline: str = "ce") -> list[ReseedJob]:
    """The runs still missing for ``k`` fresh seeds of each trick's best trial (of the ``top``
    best tricks by validation and the baseline, when ``top`` is given): seeds ``s+1 .. s+k``
    of the trial's seed ``s`` (so every trick gets the same new seeds), minus those a previous
    ``--reseed`` already completed."""
    best = best_runs(record, metric, direction)
    if top is not None:
        best = best[(best["trick"] == baseline) | (best["trick"].isin(list(best["trick"][:top])))]
    done = record.reseeds[record.reseeds["state"] == "complete"] if not record.reseeds.empty else None
    jobs = []
    for _, b in best.iterrows():
        text = download_text(record.client, str(b["run_id"]), "config.yaml")
        if text is None:
            raise ImbsweepError(f"run {b['run_id']} (trick {b['trick']}, trial {b['trial']}) has no config.yaml "
                                "artifact (tracking.artifacts=false?): it cannot be re-run")
        base = int(float(b.get("params.trainer.seed", 0) or 0))
        have: set[int] = set()
        if done is not None and f"tags.{RESEED_OF}" in done.columns:
            mine = done[done[f"tags.{RESEED_OF}"] == b["run_id"]]
            have = {int(float(s)) for s in mine.get("params.trainer.seed", [])}
        choices = choices_of(b)
        for seed in range(base + 1, base + k + 1):
            if seed not in have:
                jobs.append(ReseedJob(str(b["trick"]), str(b["run_id"]), int(b["trial"]), seed, text, choices,
                                      record.uri, str(state), record.experiment_id, record.parent_run_id,
                                      record.name, threads))
    return jobs


def run_reseed(job: ReseedJob) -> tuple[str, int, str, str | None]:
    """One replicate (in a worker process): the trial's config with a new seed, recorded as a
    child run of the study's parent run. Returns (trick, seed, state, reason)."""
    import logging

    from omegaconf import DictConfig, OmegaConf

    from .tracking import MlflowRun
    from .training import fit, prepare

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    cfg = OmegaConf.create(job.config_yaml)
    assert isinstance(cfg, DictConfig)
    cfg.trainer.seed = job.seed
    cfg.state_dir = job.state
    # the store compare reads, not the (redacted) one in the artifact; the local store stays implicit
    from ._paths import local_tracking_uri, state_dir

    cfg.tracking.uri = None if job.uri == local_tracking_uri(state_dir(job.state)) else job.uri
    if job.threads and cfg.trainer.get("num_threads") is None:
        cfg.trainer.num_threads = job.threads
    setup = prepare(cfg)
    tags = {STUDY: job.study, ROLE: "reseed", RESEED_OF: job.run_id, "imbsweep.reseed_of_trial": str(job.trial)}
    with MlflowRun(cfg, experiment_id=job.experiment_id, parent_run_id=job.parent_run_id, tags=tags,
                   run_name=f"trial-{job.trial}-seed-{job.seed}", choices=job.choices) as rec:
        result = fit(cfg, rec, setup)
    return job.trick, job.seed, result.state, result.reason


def reseed(record: StudyRecord, metric: str | None, k: int, jobs: int, state: str | os.PathLike[str],
           top: int | None = None, baseline: str = "ce") -> int:
    """Run the missing replicates on ``jobs`` worker processes with a progress bar; return
    how many ran. Failures are reported and kept (FAILED runs), not raised."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    metric, direction = record.metric_direction(metric)
    from omegaconf import OmegaConf

    from .sweep._runner import _threads

    threads = _threads(jobs, OmegaConf.create({}))  # split torch threads as the sweeper does
    todo = reseed_jobs(record, metric, direction, k, state, threads, top, baseline)
    if not todo:
        which = "every trick's" if top is None else f"the {top} best tricks' and {baseline}'s"
        print(f"reseed: {which} best trial already has {k} fresh seeds", file=sys.stderr)
        return 0
    import multiprocessing as mp

    failed = []
    columns = (TextColumn("reseed {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    from rich.console import Console

    with Progress(*columns, transient=False, console=Console(stderr=True)) as bar, \
            ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        task = bar.add_task(f"{len({j.trick for j in todo})} tricks x {k} seeds", total=len(todo))
        futures = [pool.submit(run_reseed, j) for j in todo]
        for f in as_completed(futures):
            try:
                trick, seed, state_, reason = f.result()
            except ImbsweepError as exc:
                failed.append(str(exc))
            else:
                if state_ != "complete":
                    failed.append(f"{trick} seed {seed}: {reason}")
            bar.advance(task)
    for line in failed:
        print(f"imbsweep: reseed failed: {line}", file=sys.stderr)
    return len(todo)


def sweep_jobs(record: StudyRecord) -> int:
    """The study's ``n_jobs`` (its parent run's ``sweep.yaml``), else 1."""
    import yaml

    if not record.parent_run_id:
        return 1
    text = download_text(record.client, record.parent_run_id, "sweep.yaml")
    try:
        return max(1, int((yaml.safe_load(text or "") or {}).get("n_jobs", 1)))
    except (TypeError, ValueError):
        return 1


