"""``imbsweep compare A B C …``: which arm helps across datasets, one tournament per dataset.

Demšar (JMLR 2006) is the method. Each study (one dataset) gives every arm one number, its
mean test metric over the paired seed replicates (``compare --reseed K``). Across studies:

- per dataset the arms are ranked (1 = best, ties share the mean rank); the mean rank of an
  arm over the datasets is its summary;
- the Friedman test of "every arm is alike", with the Iman–Davenport F (Demšar §3.2.2);
- each arm against the baseline arm: Wilcoxon's signed-rank test over the datasets of the
  per-dataset differences of means (Demšar §3.1.3; zero differences split between the two
  sides, as Demšar does), Holm-adjusted over the arms; a verdict is printed only when the
  number of datasets lets the test reach α after Holm at all (the exact test's smallest
  two-sided p is 2/2^N: with 7 arms against the baseline, 9 datasets);
- wins / ties / losses against the baseline: each study's own paired verdict;
- the critical difference of the Nemenyi test for the diagram (Demšar §3.2.2, Fig. 1).

The studies must agree: the same arms, the same baseline, the same reported metric and
direction, and verdicts in each (the fairness guard passed); otherwise one line, no table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..results import StudyError
from . import _stats
from ._table import Comparison, verdict_words

TEST = "Wilcoxon signed-rank test over datasets"


def ranks(values: Sequence[Sequence[float]], direction: str) -> list[list[float]]:
    """Per row (a dataset), the rank of each column (an arm): 1 the best, ties averaged."""
    from scipy.stats import rankdata

    sign = -1.0 if direction == "maximize" else 1.0
    return [[float(r) for r in rankdata([sign * v for v in row])] for row in values]


def friedman(mean_ranks: Sequence[float], n: int) -> tuple[float, float, float]:
    """Friedman's chi-square from the arms' mean ranks over ``n`` datasets, the Iman–Davenport
    F and its p-value (F with k-1 and (k-1)(n-1) degrees of freedom), as Demšar §3.2.2."""
    from scipy.stats import chi2 as chi2_dist
    from scipy.stats import f

    k = len(mean_ranks)
    chi2 = 12 * n / (k * (k + 1)) * (math.fsum(r * r for r in mean_ranks) - k * (k + 1) ** 2 / 4)
    denominator = n * (k - 1) - chi2
    if denominator <= 0:  # every dataset ranks the arms alike: F is infinite, so take the chi-square's p
        return chi2, math.inf, float(chi2_dist.sf(chi2, k - 1))
    ff = (n - 1) * chi2 / denominator
    return chi2, ff, float(f.sf(ff, k - 1, (k - 1) * (n - 1)))


def nemenyi_cd(k: int, n: int, alpha: float = _stats.ALPHA) -> float:
    """The Nemenyi test's critical difference of mean ranks: q_α √(k(k+1)/(6n)), with q_α the
    studentized range quantile over √2 (Demšar's Table 5: 2.569 for k = 4 at α = 0.05)."""
    from scipy.stats import studentized_range

    q = float(studentized_range.ppf(1 - alpha, k, math.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6 * n))


def wilcoxon_p(d: Sequence[float]) -> float:
    """Two-sided p of Wilcoxon's signed-rank test of the differences ``d`` (zeros split
    between the sides, as Demšar §3.1.3); 1 when every difference is 0."""
    from scipy.stats import wilcoxon

    if all(v == 0 for v in d):
        return 1.0
    return float(wilcoxon(d, zero_method="zsplit").pvalue)


def smallest_p(n: int) -> float:
    """The smallest two-sided p the exact signed-rank test gives on ``n`` differences: 2/2^n."""
    return 2.0 / 2 ** n


def datasets_needed(arms_tested: int, alpha: float = _stats.ALPHA) -> int:
    """How many datasets the Wilcoxon test needs before Holm over ``arms_tested`` arms can
    reach ``alpha`` at all."""
    n = 1
    while smallest_p(n) * arms_tested > alpha:
        n += 1
    return n


@dataclass
class Across:
    """The comparison of the same arms over several studies (datasets)."""

    studies: list[str]
    baseline: str
    test_metric: str
    direction: str
    alpha: float
    table: Any  # pandas.DataFrame, one row per arm, best mean rank first (see ``across``)
    values: Any  # pandas.DataFrame: studies x arms, each arm's mean test metric in each study
    chi2: float
    ff: float
    p_friedman: float
    cd: float  # Nemenyi's critical difference of mean ranks

    @property
    def n(self) -> int:
        return len(self.studies)

    @property
    def k(self) -> int:
        return len(self.table)

    @property
    def decides(self) -> bool:
        """Whether the number of datasets lets a verdict be reached at all."""
        return self.n >= datasets_needed(self.k - 1, self.alpha)

    @property
    def conclusion(self) -> str:
        t = self.table
        head = (f"Across {self.n} datasets of {self.test_metric} (Friedman–Iman–Davenport F = {self.ff:.2f}, "
                f"p = {self.p_friedman:.2g}; {TEST}, Holm, α = {self.alpha}): ")
        best = str(t.iloc[0]["arm"])
        ranks = f"best mean rank: {best} ({t.iloc[0]['mean_rank']:.2f} of {self.k})"
        if not self.decides:
            need = datasets_needed(self.k - 1, self.alpha)
            return (head + f"{ranks}; no verdicts: {self.n} datasets cannot reach α over {self.k - 1} arms "
                    f"(the test needs {need}), so ranks and win counts only.")
        parts = verdict_words(t, self.baseline)
        return head + "; ".join([*parts, ranks]) + "."


def across(comparisons: Sequence[Comparison], alpha: float = _stats.ALPHA) -> Across:
    """The per-arm table over the studies' comparisons (see the module docstring): columns
    ``arm, mean_rank, wins, ties, losses, delta_median, delta_min, delta_max, p, p_holm,
    verdict`` plus one ``mean:<study>`` column per study."""
    import pandas as pd

    first = comparisons[0]
    names = [c.study for c in comparisons]
    if len(set(names)) < len(names):
        raise StudyError(f"studies {', '.join(names)}: a study is named twice")
    for c in comparisons:
        if c.baseline is None:
            raise StudyError(f"study {c.study!r} has no baseline arm: compare across studies tests every arm "
                             "against the same baseline (--baseline ARM)")
        for what, mine, theirs in (("baseline", c.baseline, first.baseline),
                                   ("reported metric", c.test_metric, first.test_metric),
                                   ("direction", c.direction, first.direction)):
            if mine != theirs:
                raise StudyError(f"studies {first.study!r} and {c.study!r} differ in their {what} ({theirs} vs "
                                 f"{mine}): compare across studies needs the same in every one")
        if c.warning:
            raise StudyError(f"study {c.study!r} has no verdicts ({c.warning})")
        missing = [a for a in c.table["arm"] if c.table.set_index("arm").loc[a, "seeds"] < 2]
        if missing:
            raise StudyError(f"study {c.study!r}: {', '.join(map(str, missing))} without seed replicates "
                             f"(imbsweep compare {c.study} --reseed 5)")
    arms = [str(a) for a in first.table["arm"]]
    for c in comparisons[1:]:
        has = {str(a) for a in c.table["arm"]}
        if has != set(arms):
            lack = sorted(set(arms) - has)
            extra = sorted(has - set(arms))
            raise StudyError(f"studies {first.study!r} and {c.study!r} have different arms"
                             + (f" ({c.study} lacks {', '.join(lack)})" if lack else "")
                             + (f" ({c.study} adds {', '.join(extra)})" if extra else "")
                             + ": compare across studies needs the same arms in every one")
    if len(arms) < 2:
        raise StudyError(f"study {first.study!r} has one arm: compare across studies ranks arms against each other")
    baseline = str(first.baseline)
    by = [c.table.set_index("arm") for c in comparisons]
    values = [[float(t.loc[a, "mean"]) for a in arms] for t in by]
    r = ranks(values, first.direction)
    mean_rank = [math.fsum(row[j] for row in r) / len(r) for j in range(len(arms))]
    chi2, ff, p_f = friedman(mean_rank, len(r))
    base_j = arms.index(baseline)
    rows = []
    for j, arm in enumerate(arms):
        deltas = [row[j] - row[base_j] for row in values]
        verdicts = [str(t.loc[arm, "verdict"]) for t in by]
        rows.append({"arm": arm, "mean_rank": mean_rank[j], "wins": verdicts.count("better"),
                     "ties": verdicts.count("no evidence"), "losses": verdicts.count("worse"),
                     "delta_median": float(pd.Series(deltas).median()) if arm != baseline else math.nan,
                     "delta_min": min(deltas) if arm != baseline else math.nan,
                     "delta_max": max(deltas) if arm != baseline else math.nan,
                     "p": wilcoxon_p(deltas) if arm != baseline else math.nan,
                     "_lean": _stats.hodges_lehmann(deltas),  # the side the signed-rank test leans to
                     **{f"mean:{s}": values[i][j] for i, s in enumerate(names)}})
    table = pd.DataFrame(rows)
    table["p_holm"] = _stats.holm(list(table["p"]))
    result = Across(names, baseline, first.test_metric, first.direction, alpha, table,
                    pd.DataFrame(values, index=names, columns=arms), chi2, ff, p_f,
                    nemenyi_cd(len(arms), len(r), alpha))
    verdict = []
    for _, row in table.iterrows():
        if row["arm"] == baseline:
            verdict.append("baseline")
        elif not result.decides:
            verdict.append("")
        else:
            verdict.append(_stats.verdict(row["_lean"], row["p_holm"], first.direction, alpha))
    table["verdict"] = verdict
    result.table = table.drop(columns="_lean").sort_values("mean_rank", kind="stable").reset_index(drop=True)
    return result


#: the machine columns of ``--format csv`` (then one ``mean:<study>`` column per study)
COLUMNS = ("arm", "mean_rank", "wins", "ties", "losses", "delta_median", "delta_min", "delta_max", "p", "p_holm",
           "verdict")


def to_csv(a: Across) -> str:
    return str(a.table[[*COLUMNS, *(f"mean:{s}" for s in a.studies)]].to_csv(index=False))


def compact_frame(a: Across) -> Any:
    """One line per arm: verdict, arm, mean rank, wins / ties / losses against the baseline,
    the per-dataset Δ's median [min, max], p Holm."""
    import pandas as pd

    t = a.table
    widest = max((abs(v) for v in list(t["delta_min"]) + list(t["delta_max"]) if v == v and v != 0), default=0.0)
    d = 3 if widest == 0 else min(6, max(3, 1 - math.floor(math.log10(widest))))
    return pd.DataFrame({
        "verdict": list(t["verdict"]),
        "arm": list(t["arm"]),
        "mean rank": [f"{v:.2f}" for v in t["mean_rank"]],
        f"W/T/L vs {a.baseline}": ["" if r["arm"] == a.baseline else f"{r['wins']}/{r['ties']}/{r['losses']}"
                                   for _, r in t.iterrows()],
        "Δ median [min, max]": ["" if m != m else f"{m:+.{d}f} [{lo:+.{d}f}, {hi:+.{d}f}]"
                                for m, lo, hi in zip(t["delta_median"], t["delta_min"], t["delta_max"], strict=True)],
        "p Holm": ["" if v != v else f"{v:.2g}" for v in t["p_holm"]],
    })


def legend(a: Across) -> list[str]:
    return [f"mean rank: the arm's rank among the {a.k} arms on each dataset (1 = best), averaged over the "
            f"{a.n} datasets; two arms whose mean ranks differ by less than {a.cd:.2f} cannot be told apart "
            f"(Nemenyi, α = {a.alpha}: the diagram in the report).",
            f"W/T/L: the datasets on which the arm beat, could not be told apart from, or trailed tuned "
            f"{a.baseline} (each study's own paired verdict). Δ: the arm's mean minus {a.baseline}'s, per dataset.",
            f"p Holm: {TEST} of the per-dataset Δ, Holm over the {a.k - 1} arms tested."]


def to_markdown(a: Across) -> str:
    table = compact_frame(a).to_markdown(index=False, disable_numparse=True)
    return "\n\n".join([f"**{a.conclusion}**", table, " ".join(legend(a)),
                         f"Studies: {', '.join(a.studies)}."]) + "\n"


def print_across(a: Across, file: Any = None) -> None:
    """The conclusion first, one line per arm fitting the terminal (80 columns in a file
    unless ``$COLUMNS`` says more), then what the columns mean."""
    import sys

    from rich.console import Console

    from ._formats import print_compact

    console = Console(file=file or sys.stdout, highlight=False, markup=False)
    console.print(a.conclusion, style="bold")
    console.print()
    df = compact_frame(a)
    print_compact(console, df, ("verdict", "arm"))
    for line in legend(a):
        console.print(line, style="dim")
