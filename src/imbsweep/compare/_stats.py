"""The statistics of a comparison: pure functions of numbers, no store, no pandas.

Paired replicates: the k-th replicate of every arm ran with the same seed(s), so each arm is
tested against the baseline on the per-seed differences (the seed's own luck cancels):

- ``paired_p``: two-sided paired t-test (the numbers of ``scipy.stats.ttest_rel``, computed
  here with scipy.special's t CDF: 100x faster) or Wilcoxon signed-rank
  (``scipy.stats.wilcoxon``, exact for small n);
- ``holm``: Holm's step-down adjustment over the arms of one table (family-wise error <= alpha);
- ``t_interval``: the mean paired difference with its Student-t 95% interval;
- ``bounded_interval``: an arm's own mean with a 95% interval that never leaves the metric's
  range: the Student-t interval of the mean, clipped to the range (the true mean lies in the
  range, so clipping loses no coverage);
- ``prob_improvement``: the share of paired replicates in which the arm beats the baseline
  (a tie counts one half);
- ``verdict``: what may be said against the baseline at alpha after Holm;
- ``could_be_best``: the set of arms that cannot be told apart from the best (subset
  selection: one-sided paired tests against every rival, Bonferroni);
- ``expected_max``: Dodge et al. (2019)'s expected best value after n trials.

scipy is imported inside the functions: ``scipy.stats`` alone takes ~1.5 s to import.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ALPHA = 0.05
TESTS = {"t": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}
#: metric names (after the split prefix) whose values live in [0, 1]
UNIT_RANGE = ("acc", "balanced_acc", "macro_f1", "gmean", "worst_class_recall", "ece", "recall/", "precision/",
              "f1", "auc", "brier")
#: under-tuned: the second half of the budget still lifts the expected best by more than this
#: share of the arm's value range (max - min over its complete trials)
RISE = 0.05


def metric_range(metric: str) -> tuple[float, float] | None:
    """``(0, 1)`` for the metrics that live there (``val/balanced_acc``, ``test/ece``, ...),
    None for one without a known range (``loss``, a custom metric)."""
    name = metric.split("/", 1)[1] if metric.startswith(("val/", "test/", "train/")) else metric
    return (0.0, 1.0) if name.startswith(UNIT_RANGE) else None


def t_interval(xs: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the Student-t interval; the bounds are NaN below 2 values."""
    from scipy.special import stdtrit  # the t quantile (scipy.special imports fast)

    if not xs:
        return math.nan, math.nan, math.nan
    n = len(xs)
    m = math.fsum(xs) / n
    if n < 2:
        return m, math.nan, math.nan
    sd = math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (n - 1))
    half = float(stdtrit(n - 1, 0.5 + level / 2)) * sd / math.sqrt(n)
    return m, m - half, m + half


def bounded_interval(xs: Sequence[float], bounds: tuple[float, float] | None,
                     level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): an arm's arithmetic mean with its Student-t interval, clipped to
    ``bounds`` when the metric has a range. The true mean lies inside the range, so the
    clipped interval covers it exactly as often as the t interval does, and the mean always
    lies inside its interval. (A logit-scale interval mapped back, tried first, covers the
    median-like back-transformed centre rather than the mean, and explodes at a value of 0 or 1,
    which ``worst_class_recall`` often is.)

    Example:
        >>> m, lo, hi = bounded_interval([0.99, 0.995, 1.0], (0.0, 1.0))
        >>> 0 <= lo <= m <= hi == 1.0
        True
    """
    m, lo, hi = t_interval(xs, level)
    if bounds is None or math.isnan(lo):
        return m, lo, hi
    return m, min(max(lo, bounds[0]), bounds[1]), max(min(hi, bounds[1]), bounds[0])


def hodges_lehmann(d: Sequence[float]) -> float:
    """The median of the Walsh averages of the differences: the location estimate that goes
    with Wilcoxon's signed-rank test (its sign is the side the test leans to)."""
    walsh = [(d[i] + d[j]) / 2 for i in range(len(d)) for j in range(i, len(d))]
    return statistics.median(walsh) if walsh else math.nan


def paired_p(a: Sequence[float], b: Sequence[float], test: str = "t") -> float:
    """Two-sided p-value of ``a`` against ``b`` paired element by element: the paired t-test
    (as ``scipy.stats.ttest_rel``) or Wilcoxon's signed-rank test (``scipy.stats.wilcoxon``).
    NaN below 2 pairs; 1 when every difference is 0 (nothing to test); with differences
    that are all equal and not 0 the t-test's p is 0 (no spread at all)."""
    if test not in TESTS:
        raise ValueError(f"{test=} must be one of {', '.join(TESTS)}")
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} != {len(b)}")
    if len(a) < 2:
        return math.nan
    d = [x - y for x, y in zip(a, b, strict=True)]
    if all(v == 0 for v in d):
        return 1.0
    if test == "t":
        return _t_p(d, "two-sided")
    from scipy import stats

    return float(stats.wilcoxon(a, b).pvalue)


def _t_p(d: Sequence[float], alternative: str) -> float:
    """The one-sample t-test of the differences ``d`` (= ``scipy.stats.ttest_rel``, to rounding;
    its own numbers and scipy.special's t CDF: ~100x faster, for the null simulations).
    Differences without spread: p 0 (1 against the side they are on)."""
    from scipy.special import stdtr

    n = len(d)
    m = math.fsum(d) / n
    ss = math.fsum((x - m) ** 2 for x in d)
    t = math.copysign(math.inf, m) if ss == 0 else m / math.sqrt(ss / (n - 1) / n)
    if alternative == "two-sided":
        return float(2 * stdtr(n - 1, -abs(t)))
    return float(stdtr(n - 1, -t if alternative == "greater" else t))


def holm(ps: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted): the i-th
    smallest of m p-values becomes ``max_{j<=i} min(1, (m - j + 1) p_(j))``."""
    order = sorted((p, i) for i, p in enumerate(ps) if not math.isnan(p))
    m = len(order)
    out = [math.nan] * len(ps)
    running = 0.0
    for j, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - j) * p))
        out[i] = running
    return out


def better(x: float, y: float, direction: str) -> bool:
    return x > y if direction == "maximize" else x < y


def prob_improvement(a: Sequence[float], b: Sequence[float], direction: str) -> float:
    """The share of pairs in which ``a`` beats ``b`` in ``direction``; a tie counts one half.
    NaN without pairs."""
    if not a:
        return math.nan
    wins = sum(1.0 if better(x, y, direction) else 0.5 if x == y else 0.0 for x, y in zip(a, b, strict=True))
    return wins / len(a)


def verdict(delta: float, p_adjusted: float, direction: str, alpha: float = ALPHA) -> str:
    """``better`` / ``worse`` when the Holm-adjusted p is below ``alpha`` (the sign of the mean
    paired difference, read in ``direction``), else ``no evidence``; ``""`` when untested."""
    if math.isnan(p_adjusted) or math.isnan(delta):
        return ""
    if p_adjusted >= alpha or delta == 0:
        return "no evidence"
    return "better" if better(delta, 0.0, direction) else "worse"


def paired(x: Mapping[int, float], y: Mapping[int, float]) -> tuple[list[float], list[float]]:
    """The values of the seeds both have, in seed order."""
    common = sorted(set(x) & set(y))
    return [x[s] for s in common], [y[s] for s in common]


@dataclass
class ArmStats:
    """One arm's replicate statistics (see :func:`arm_statistics`)."""

    seeds: int
    mean: float
    ci_low: float
    ci_high: float
    delta: float = math.nan
    delta_ci_low: float = math.nan
    delta_ci_high: float = math.nan
    p: float = math.nan
    p_holm: float = math.nan
    p_improve: float = math.nan
    verdict: str = ""
    tied_with_best: bool | None = None  # could be the best (could_be_best); None: not compared
    is_best: bool = False


def arm_statistics(values: Mapping[str, Mapping[int, float]], baseline: str | None, direction: str,
                   bounds: tuple[float, float] | None = None, test: str = "t",
                   alpha: float = ALPHA, verdicts: bool = True) -> dict[str, ArmStats]:
    """Every arm's statistics from its replicate values keyed by seed.

    Args:
        values: arm -> {seed: value}; arms are paired on the seeds they share.
        baseline: the arm the others are tested against (None: no tests against a baseline).
        direction: ``maximize`` or ``minimize``.
        bounds: the metric's range (``metric_range``), for the arms' own intervals.
        test: ``t`` (paired t-test) or ``wilcoxon``.
        alpha: the family-wise error rate of the verdicts and of the tie set.
        verdicts: False leaves ``verdict`` and the tie set empty (the fairness guard).

    Returns:
        arm -> ArmStats. ``p_holm`` adjusts over every arm tested against the baseline.
        ``is_best``: the best mean over >= 2 seeds; ``tied_with_best``: the arm may be the
        best (see :func:`could_be_best`).
    """
    # every statistic on the seeds every arm with replicates has: an arm that misses a seed
    # (a replicate that failed) must not look better by skipping it
    sets = [set(v) for v in values.values() if v]
    common = set.intersection(*sets) if sets else set()
    values = {a: {s: x for s, x in v.items() if s in common} for a, v in values.items()}
    out: dict[str, ArmStats] = {}
    for arm, by_seed in values.items():
        xs = [by_seed[s] for s in sorted(by_seed)]
        m, lo, hi = bounded_interval(xs, bounds)
        out[arm] = ArmStats(len(xs), m, lo, hi)
    base = values.get(baseline, {}) if baseline is not None else {}
    tested = []
    for arm, by_seed in values.items():
        if arm == baseline or not base:
            continue
        a, b = paired(by_seed, base)
        if not a:
            continue
        s = out[arm]
        s.delta, s.delta_ci_low, s.delta_ci_high = t_interval([x - y for x, y in zip(a, b, strict=True)])
        s.p = paired_p(a, b, test)
        s.p_improve = prob_improvement(a, b, direction)
        tested.append(arm)
    for arm, p in zip(tested, holm([out[a].p for a in tested]), strict=True):
        out[arm].p_holm = p
        if verdicts:
            lean = out[arm].delta
            if test == "wilcoxon":  # the rank test's own side, not the mean's
                a, b = paired(values[arm], base)
                lean = hodges_lehmann([x - y for x, y in zip(a, b, strict=True)])
            out[arm].verdict = verdict(lean, p, direction, alpha)
    if not verdicts:
        return out
    ranked = [a for a in out if out[a].seeds >= 2]
    if not ranked:
        return out
    for arm in ranked:
        out[arm].tied_with_best = could_be_best(arm, {a: values[a] for a in ranked}, direction, test, alpha)
    sign = 1.0 if direction == "maximize" else -1.0
    # the best mean among the arms that may be the best (on shared seeds the two agree)
    best = max((a for a in ranked if out[a].tied_with_best), key=lambda a: sign * out[a].mean, default=None)
    if best is not None:
        out[best].is_best = True
    return out


def one_sided_p(a: Sequence[float], b: Sequence[float], direction: str, test: str = "t") -> float:
    """p-value of "``a`` is better than ``b``" (paired, one-sided in ``direction``); NaN
    below 2 pairs, 1 when every difference is 0."""
    if len(a) < 2:
        return math.nan
    d = [x - y for x, y in zip(a, b, strict=True)]
    if all(v == 0 for v in d):
        return 1.0
    alternative = "greater" if direction == "maximize" else "less"
    if test == "t":
        return _t_p(d, alternative)
    from scipy import stats

    return float(stats.wilcoxon(a, b, alternative=alternative).pvalue)


def could_be_best(arm: str, values: Mapping[str, Mapping[int, float]], direction: str, test: str = "t",
                  alpha: float = ALPHA) -> bool:
    """Whether ``arm`` stays in the set of arms that cannot be told apart from the best: no
    other arm beats it in a one-sided paired test at ``alpha / (k - 1)`` (Bonferroni over its
    k - 1 rivals; Gupta's subset selection). The set holds the truly best arm with
    probability >= 1 - alpha, so an arm left out is behind the best with that confidence."""
    rivals = [r for r in values if r != arm]
    ps = []
    for r in rivals:
        a, b = paired(values[r], values[arm])
        if len(a) >= 2:
            ps.append(one_sided_p(a, b, direction, test))
    return not ps or min(ps) * len(rivals) >= alpha


# -- tuning curves ---------------------------------------------------------------------------------
def expected_max(values: Sequence[float], direction: str = "maximize") -> tuple[list[float], list[float]]:
    """Expected best value after n = 1..N trials, and its standard deviation (Dodge et al.,
    2019, "Show your work"): over all orderings of the N trials, the best of the first n.

    With the values sorted ``v_(1) <= ... <= v_(N)``, the best of n drawn without replacement
    is ``v_(i)`` with probability ``C(i-1, n-1) / C(N, n)`` (i is the largest index drawn);
    ties need no care, the expectation is the same. For ``minimize`` the best is the minimum.

    Example:
        >>> expected_max([1.0, 2.0, 3.0])[0]
        [2.0, 2.6666666666666665, 3.0]
    """
    import numpy as np
    from scipy.special import gammaln

    sign = 1.0 if direction == "maximize" else -1.0
    v = np.sort(sign * np.asarray(values, dtype=float))
    n_all = len(v)
    if n_all == 0:
        return [], []
    i = np.arange(1, n_all + 1, dtype=float)
    means, sds = [], []
    for n in range(1, n_all + 1):
        ok = i >= n
        # log C(i-1, n-1) - log C(N, n), only where i >= n (elsewhere the weight is 0)
        logw = (gammaln(i[ok]) - gammaln(n) - gammaln(i[ok] - n + 1)
                - (gammaln(n_all + 1) - gammaln(n + 1) - gammaln(n_all - n + 1)))
        w = np.exp(logw)
        w /= w.sum()  # exactly 1 in exact arithmetic; removes the rounding of the logs
        e = float(w @ v[ok])
        var = max(float(w @ (v[ok] - e) ** 2), 0.0)
        means.append(sign * e)
        sds.append(math.sqrt(var))
    return means, sds


def under_tuned(values: Sequence[float], direction: str = "maximize", rise: float = RISE,
                budget: int | None = None) -> bool | None:
    """Whether the arm's tuning curve was still rising: the expected best after its whole
    budget exceeds that after half of it by more than ``rise`` times the arm's value range.
    ``values``: the arm's complete trials; ``budget``: its finished trials (pruned and failed
    ones count as trials that are never the best, so the curve's n is the budget spent).
    Fewer than 3 complete trials: True (no curve to speak of); all values equal: False.

    Values spread evenly gain about 3% of their range from n = N/2 to N (``n/(n+1)`` of a
    uniform sample), so they pass; a best trial far ahead of the rest (a lucky draw the search
    has not yet reproduced) is flagged: more budget could change the arm's best."""
    if len(values) < 3:
        return True
    spread = max(values) - min(values)
    if spread == 0:
        return False
    means, _ = expected_max(curve_values(values, budget, direction), direction)
    half = max(1, math.ceil(len(means) / 2))
    return abs(means[-1] - means[half - 1]) > rise * spread


def curve_values(complete: Sequence[float], budget: int | None, direction: str = "maximize") -> list[float]:
    """The values a tuning curve is drawn over: the complete trials, and each pruned or failed
    one (``budget`` minus the complete ones) at the worst complete value, never the best."""
    extra = max(0, (budget or 0) - len(complete))
    if not complete or not extra:
        return list(complete)
    worst = min(complete) if direction == "maximize" else max(complete)
    return [*complete, *([worst] * extra)]
