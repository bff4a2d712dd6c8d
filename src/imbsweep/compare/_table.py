"""The Comparison: one row per arm of a study, built from its record.

Per arm: its trials (complete / pruned / failed), the best validation value and the trial
that gave it, its tuning curve (expected best after n trials) and whether that curve still
rises; then, over the paired seed replicates of that best configuration (``--reseed K``:
``trainer.seed`` 1..K in every arm), the test metric's mean with an interval inside the
metric's range, and against the baseline arm the mean paired difference with its 95% CI,
the paired test's p, the Holm-adjusted p, the probability of improvement and a verdict.
The lucky best trial itself never enters the replicate statistics: it was selected on
validation, and its seed is part of that luck.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..names import TAG_RESEED_OF, TAG_VARY_SPLIT
from ..results import StudyError, StudyRecord, best_runs, posthoc_column
from . import _stats
from ._configs import arm_fixed, describe_config, reported_metric, searched_keys, sweep_space, varying_params

#: the machine columns, in the order ``--format csv`` writes them (issue 10's contract first)
COLUMNS = ("arm", "trials", "complete", "pruned", "failed", "best_val", "best_trial", "seeds", "mean", "ci_low",
           "ci_high", "delta", "delta_ci_low", "delta_ci_high", "p", "p_holm", "p_improve", "verdict",
           "seed_values", "seed_ids", "vs_best", "under_tuned", "best_test", "trick", "config", "run_id")
#: budgets further apart than this (max / min finished trials), or a baseline with fewer
#: trials than MIN_BASELINE_TRIALS: the table shows numbers but no verdicts
MAX_BUDGET_RATIO, MIN_BASELINE_TRIALS = 2.0, 3
DEFAULT_BASELINE = "ce"


@dataclass
class Comparison:
    study: str
    metric: str  # the validation metric the best trials were picked on
    direction: str
    test_metric: str  # what the replicates report
    baseline: str | None
    table: Any  # pandas.DataFrame: COLUMNS plus ``_values`` (seed -> value), best first
    test: str = "t"  # the paired test: "t" or "wilcoxon"
    curves: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    warning: str | None = None  # the fairness guard's line (no verdicts were given)
    vary_split: bool = False
    alpha: float = _stats.ALPHA
    posthoc_arms: dict[str, str] = field(default_factory=dict)  # arm -> the arm whose models it re-scores
    posthoc_kinds: dict[str, str] = field(default_factory=dict)  # arm -> how (posthoc.POSTHOC_KINDS)
    seed_key: str = "trainer.seed"  # what the replicates set to 1..K

    @property
    def replicated(self) -> bool:
        """Some arm has >= 2 seed replicates."""
        return bool((self.table["seeds"] >= 2).any())

    @property
    def test_name(self) -> str:
        return _stats.TESTS[self.test]

    @property
    def note(self) -> str:
        """How to read the table, with the tests named."""
        bounds = _stats.metric_range(self.test_metric)
        interval = "Student t, clipped to [0, 1]" if bounds else "Student t"
        split = " and data.seed" if self.vary_split else ""
        base = self.baseline or "(no baseline)"
        return (f"best val: {self.metric} of the arm's best trial (its curve: expected best after n trials, "
                f"Dodge et al. 2019, pruned and failed trials counted as never best; under-tuned when the "
                f"second half of its budget still adds > {_stats.RISE:.0%} of the arm's value range). "
                f"Replicates: that configuration re-run with {self.seed_key}{split} = 1..K in every arm, paired "
                f"by seed, statistics on the seeds every arm has; mean ± 95% CI: {interval}; Δ: mean paired "
                f"difference to {base} with its Student-t 95% CI; p: two-sided {self.test_name} against "
                f"{base}; p Holm: Holm-adjusted over the {self.n_tested} arms tested; P(better): share of "
                f"seeds where the arm beats {base} (ties half); verdict at α = {self.alpha} after Holm; "
                f"'tied with best' = not told apart from the best: no arm beats it in a one-sided paired "
                f"{self.test_name.replace('paired ', '')} at α/(k-1) (the set holds the truly best arm with "
                f"{1 - self.alpha:.0%} confidence); no ranks among them"
                + "".join(f"; {a} trains nothing of its own: {src}'s trials and models (same budget, same "
                          f"replicate runs) scored after {posthoc_words(self.posthoc_kinds.get(a))}, τ picked "
                          f"on validation in each run" for a, src in self.posthoc_arms.items()))

    @property
    def n_tested(self) -> int:
        return int(self.table["p"].notna().sum())

    @property
    def conclusion(self) -> str:
        """What the table concludes, in one sentence."""
        t = self.table
        if self.warning:
            return f"No verdicts: {self.warning}."
        if not self.replicated:
            return f"No seed replicates yet, so no verdicts: imbsweep compare {self.study} --reseed 5."
        parts = verdict_words(t, self.baseline) if self.baseline is not None and self.n_tested else []
        best = list(t.loc[t["vs_best"] == "best", "arm"])
        tied = list(t.loc[t["vs_best"] == "tied", "arm"])
        if best:
            parts.append(f"best mean: {best[0]}" + (
                f" ({', '.join(tied)} cannot be told apart from it)" if tied else ""))
        seeds = int(t["seeds"].max())
        return (f"On {seeds} paired seeds of {self.test_metric} ({self.test_name}, Holm, α = {self.alpha}): "
                + "; ".join(parts) + ".")

    @property
    def winner(self) -> tuple[str | None, str]:
        """The arm the comparison recommends and why, in words: the best mean among the arms
        that beat the baseline; the baseline when none does; the best mean without a
        baseline. ``None`` (and why) without verdicts or replicates."""
        t, base = self.table, self.baseline
        if self.warning:
            return None, f"no verdicts ({self.warning})"
        if not self.replicated:
            return None, f"no seed replicates yet (imbsweep compare {self.study} --reseed 5)"
        seeds = int(t["seeds"].max())
        if base is None or not self.n_tested:
            best = t.loc[t["vs_best"] == "best", "arm"]
            return (str(best.iloc[0]), f"the best mean on {seeds} seeds; no baseline to test it against") \
                if len(best) else (None, "no arm has a mean over >= 2 seeds")
        better = t[t["verdict"] == "better"]  # the table is ordered best mean first
        if len(better):
            arm = str(better.iloc[0]["arm"])
            more = " and has the best mean of those that do" if len(better) > 1 else ""
            return arm, f"it beats tuned {base} on {seeds} paired seeds{more}"
        return base, f"no arm beats tuned {base} on {seeds} paired seeds"


def resolve_baseline(record: StudyRecord, arms: list[str], baseline: str | None) -> str | None:
    """``baseline`` when given, else the sweep's declared baseline arm, else ``ce`` when the
    study has it (else None: no tests against a baseline). A baseline given or declared that
    is not one of the arms is an error that lists them."""
    chosen = baseline or record.baseline_arm
    if chosen is None:
        return DEFAULT_BASELINE if DEFAULT_BASELINE in arms else None
    if chosen not in arms:
        raise StudyError(f"--baseline={chosen!r}: not an arm of study {record.name!r}; "
                         f"arms: {', '.join(sorted(arms))}")
    return chosen


def fairness_warning(counts: Mapping[str, int], baseline: str | None) -> str | None:
    """The one line shown instead of verdicts when the arms' budgets are not comparable."""
    if not counts:
        return None
    lo, hi = min(counts, key=lambda a: counts[a]), max(counts, key=lambda a: counts[a])
    if counts[hi] > MAX_BUDGET_RATIO * counts[lo]:
        return (f"budgets differ more than {MAX_BUDGET_RATIO:g}x ({hi}: {counts[hi]} trials, {lo}: {counts[lo]}), "
                "so differences may be tuning, not the trick; tune every arm alike (hydra.sweeper.arms, "
                "trials_per_arm)")
    if baseline is not None and counts.get(baseline, 0) < MIN_BASELINE_TRIALS:
        return (f"the baseline {baseline} had {counts.get(baseline, 0)} trials (< {MIN_BASELINE_TRIALS}): an untuned "
                "baseline makes every trick look good; tune it like the others (hydra.sweeper.arms, trials_per_arm)")
    return None


def replicate_runs(record: StudyRecord, run_id: str, vary_split: bool) -> Any:
    """The complete replicate runs of the run ``run_id`` of the kind asked (data.seed varied
    or not), oldest first."""
    r = record.reseeds
    if r.empty or f"tags.{TAG_RESEED_OF}" not in r.columns:
        return r.iloc[:0]
    mine = r[(r["state"] == "complete") & (r[f"tags.{TAG_RESEED_OF}"] == run_id) & r["replicate"].notna()]
    if f"tags.{TAG_VARY_SPLIT}" in mine.columns:
        mine = mine[(mine[f"tags.{TAG_VARY_SPLIT}"] == "true") == vary_split]
    elif vary_split:
        return mine.iloc[:0]
    return mine.sort_values("start_time")


def replicate_values(record: StudyRecord, run_id: str, test_col: str, vary_split: bool) -> dict[int, float]:
    """seed index -> the test value of the complete replicates of the run ``run_id``; the
    first run of a seed when one ran twice."""
    mine = replicate_runs(record, run_id, vary_split)
    out: dict[int, float] = {}
    if test_col not in mine.columns:
        return out
    for k, v in zip(mine["replicate"], mine[test_col], strict=True):
        if v == v:
            out.setdefault(int(k), float(v))
    return out


# long: one table, built column by column (each a few lines, in the order the reader sees them)
def compare(record: StudyRecord, metric: str | None = None, baseline: str | None = None, test: str = "t",
            vary_split: bool = False, alpha: float = _stats.ALPHA, direction: str | None = None) -> Comparison:
    """The per-arm table of a study (see the module docstring).

    Args:
        record: the study, as ``results.load_study`` read it.
        metric: imbsweep's app: the validation metric to pick each arm's best trial on (default:
            the objective), reported as its ``test/`` twin. Another app's trials are picked on
            what they returned: ``metric`` is what is reported (default: that value).
        baseline: the arm the others are tested against (default: the sweep's baseline arm, else ``ce``).
        test: ``t`` (paired t-test) or ``wilcoxon`` (signed-rank).
        vary_split: use the replicates that also varied ``data.seed``.
        alpha: the family-wise error rate of the verdicts.
        direction: whether more or less of the reported metric is better, where its name does
            not say (another app's ``--metric``; default: ``minimize`` for a name such as loss or
            error, else ``maximize``; the study's direction for its own objectives).
    """
    import pandas as pd

    if test not in _stats.TESTS:
        raise StudyError(f"--test={test!r}: must be one of {', '.join(_stats.TESTS)}")
    if record.own_app:
        metric, direction = record.metric_direction(metric)
        test_metric, pick = reported_metric(metric), direction
    else:
        report, given = metric, direction
        metric, pick = record.selection(None)
        test_metric, direction = record.metric_direction(report) if report else (metric, pick)
        if given is not None:
            direction = given
    col, tcol = f"metrics.{metric}", f"metrics.{test_metric}"
    trials = record.trials
    arms = list(dict.fromkeys(trials["arm"]))
    baseline = resolve_baseline(record, arms, baseline)
    posthoc = record.posthoc_arms
    spaces = {str(a): sweep_space(record, posthoc.get(str(a), str(a))) for a in arms}
    fixed = arm_fixed(record)
    fixed.update({a: fixed[src] for a, src in posthoc.items() if src in fixed})
    varying = varying_params(trials) if any(sp is None for sp in spaces.values()) else []
    best = best_runs(record, metric, pick).set_index("arm")
    rows: list[dict[str, Any]] = []
    values: dict[str, dict[int, float]] = {}
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for arm, group in trials.groupby("arm", sort=False):
        arm = str(arm)
        states = group["state"]
        row: dict[str, Any] = {"arm": arm, "trick": ", ".join(sorted(set(map(str, group["trick"])))),
                               "complete": int((states == "complete").sum()),
                               "pruned": int((states == "pruned").sum()), "failed": int((states == "failed").sum())}
        row["trials"] = row["complete"] + row["pruned"] + row["failed"]
        done = [float(v) for v in group.loc[(states == "complete"), col].dropna()] if col in group else []
        if done:
            # pruned and failed trials count as trials that are never the best: n is the budget spent
            curves[arm] = _stats.expected_max(_stats.curve_values(done, row["trials"], pick), pick)
            row["under_tuned"] = _stats.under_tuned(done, pick, budget=row["trials"])
        if arm in best.index:
            b = best.loc[arm]
            space = spaces.get(arm)
            keys = varying if space is None else searched_keys(space, b)
            keys = [k for k in keys if k not in fixed.get(arm, ())]
            config = describe_config(b, keys)
            kind = record.posthoc_kinds.get(arm, "posthoc")
            tau = b.get(f"metrics.{kind}/tau")
            if arm in posthoc and tau is not None and tau == tau:
                what = {"taunorm": "τ-norm"}.get(kind, "post-hoc") + f" τ {float(tau):g}"
                config = f"{config}, {what}" if config else what
            row.update({"best_val": float(b[col]), "best_trial": int(b["trial"]),
                        "best_test": float(b.get(tcol, math.nan)), "config": config,
                        "run_id": str(b["run_id"])})
            values[arm] = replicate_values(record, str(b["run_id"]), posthoc_column(record, arm, tcol), vary_split)
        rows.append(row)
    counts = {r["arm"]: r["trials"] for r in rows}
    warning = fairness_warning(counts, baseline)
    stats = _stats.arm_statistics(values, baseline, direction, _stats.metric_range(test_metric), test, alpha,
                                  verdicts=warning is None)
    for row in rows:
        s = stats.get(row["arm"])
        by_seed = values.get(row["arm"], {})
        order = sorted(by_seed)
        row.update({"seed_values": " ".join(f"{by_seed[k]:.6g}" for k in order),
                    "seed_ids": " ".join(str(k) for k in order), "_values": by_seed})
        if s is None:
            row.update({"seeds": 0, "verdict": ""})
            continue
        row.update({k: getattr(s, k) for k in ("seeds", "mean", "ci_low", "ci_high", "delta", "delta_ci_low",
                                               "delta_ci_high", "p", "p_holm", "p_improve", "verdict")})
        row["vs_best"] = "best" if s.is_best else {True: "tied", False: "behind", None: ""}[s.tied_with_best]
        if row["arm"] == baseline:
            row["verdict"] = "baseline"
    df = pd.DataFrame(rows)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = None
    for c in ("mean", "ci_low", "ci_high", "delta", "delta_ci_low", "delta_ci_high", "p", "p_holm", "p_improve",
              "best_val", "best_test"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    df["best_trial"] = pd.to_numeric(df["best_trial"], errors="coerce").astype("Int64")
    for c in ("verdict", "vs_best", "config", "run_id"):
        df[c] = df[c].fillna("")
    df["under_tuned"] = df["under_tuned"].astype("boolean")
    df["_has"] = df["seeds"] >= 2
    df = df.sort_values(["_has", "mean", "best_val"], ascending=[False, direction == "minimize", pick == "minimize"],
                        na_position="last")
    table = df[[*COLUMNS, "_values"]].reset_index(drop=True)
    return Comparison(record.name, metric, direction, test_metric, baseline, table, test, curves, warning,
                      vary_split, alpha, posthoc, record.posthoc_kinds, record.seed_key or "the seed")


def posthoc_words(kind: str | None) -> str:
    """What a post-hoc arm's kind does, in words (``posthoc``: post-hoc logit adjustment)."""
    from ..posthoc import POSTHOC_KINDS

    return POSTHOC_KINDS.get(kind or "posthoc", POSTHOC_KINDS["posthoc"])


def verdict_words(t: Any, baseline: str) -> list[str]:
    """The verdicts of a table with ``arm`` and ``verdict`` columns, in words: ``focal beats
    tuned ce``, ``no evidence of a difference for the 3 other arms``."""
    parts = []
    for v, word in (("better", "beat"), ("worse", "trail")):
        arms = list(t.loc[t["verdict"] == v, "arm"])
        if arms:
            parts.append(f"{', '.join(arms)} {word}{'s' if len(arms) == 1 else ''} tuned {baseline}")
    rest = int((t["verdict"] == "no evidence").sum())
    if rest:
        if parts:
            others = f"the {rest} other arms" if rest > 1 else "the other arm"
        else:
            others = f"any of the {rest} arms" if rest > 1 else "the arm tested"
        parts.append(f"no evidence of a difference for {others}")
    return parts
