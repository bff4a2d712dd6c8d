"""``imbsweep compare STUDY``: which arm wins, by how much, how sure.

A fair tournament: every arm's best configuration (picked on validation) is re-run on the
same seeds 1..K (``--reseed K``), and each arm is tested against the baseline arm on the
paired differences (paired t-test or Wilcoxon, Holm-adjusted over the table), with intervals
that stay inside the metric's range, a verdict, the set of arms tied with the best, and a
tuning curve per arm that shows whether its budget was enough.

One concern per module: ``_stats`` (the numbers), ``_table`` (the Comparison of a study),
``_configs`` (what was searched), ``_formats`` (terminal, CSV, Markdown, HTML), ``_plots``,
``_report`` (files, the parent run's artifacts and summary metrics), ``_reseed`` (the
replicates on a process pool).
"""

from __future__ import annotations

from ._configs import NOT_CONFIG, describe_config, reported_metric, searched_keys, short, sweep_jobs, sweep_space
from ._formats import display_frame, print_table, to_csv, to_html, to_markdown
from ._plots import plot_metric, plot_per_class, plot_tuning_curves
from ._report import log_summary, summary_metrics, write_report
from ._reseed import ReseedJob, reseed, reseed_jobs, run_reseed
from ._stats import ArmStats, arm_statistics, expected_max, holm, paired_p, prob_improvement, verdict
from ._table import COLUMNS, Comparison, compare, fairness_warning, resolve_baseline

__all__ = [
    "COLUMNS", "NOT_CONFIG", "ArmStats", "Comparison", "ReseedJob", "arm_statistics", "compare",
    "describe_config", "display_frame", "expected_max", "fairness_warning", "holm", "log_summary",
    "paired_p", "plot_metric", "plot_per_class", "plot_tuning_curves", "print_table", "prob_improvement",
    "reported_metric", "reseed", "reseed_jobs", "resolve_baseline", "run_reseed", "searched_keys", "short",
    "summary_metrics", "sweep_jobs", "sweep_space", "to_csv", "to_html", "to_markdown",
    "verdict", "write_report",
]
