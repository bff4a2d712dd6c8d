"""The report of a comparison: files in a folder, the same files under ``report/`` of the
study's parent run, and per-arm summary metrics on that run (so the MLflow UI shows the
result without opening a file)."""

from __future__ import annotations

import math
import re
from pathlib import Path

from ..errors import ImbsweepError
from ..names import NOTE, TAG_CONCLUSION
from ..results import StudyRecord
from ._formats import compact_frame, legend, to_csv, to_html, to_markdown
from ._plots import plot_metric, plot_per_class, plot_tuning_curves
from ._table import Comparison

#: where the report's files go on the parent run, and the plot its description shows
REPORT = "report"
PLOT = f"{REPORT}/metric_by_arm.png"
#: the longest tag value MLflow's stores take (the description is a tag)
MAX_TAG = 8000
#: the per-arm values logged to the parent run as ``compare/<arm>/<name>``
SUMMARY = ("mean", "ci_low", "ci_high", "delta", "p", "p_holm", "p_improve", "seeds", "best_val")


def metric_name(arm: str, name: str) -> str:
    """``compare/<arm>/<name>`` with the characters MLflow refuses in a key replaced
    (``ce+w=inverse`` -> ``ce_w_inverse``)."""
    safe = re.sub(r"[^\w\-. ]", "_", arm)
    return f"compare/{safe}/{name}"


def summary_metrics(c: Comparison) -> dict[str, float]:
    """The parent run's per-arm metrics: the table's numbers, the verdict as +1 (better),
    -1 (worse), 0 (no evidence), and 1 for the arms tied with the best."""
    out: dict[str, float] = {}
    for _, r in c.table.iterrows():
        for name in SUMMARY:
            v = r[name]
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                out[metric_name(str(r["arm"]), name)] = float(f"{float(v):.6g}")  # no float noise in the UI
        if r["verdict"] in ("better", "worse", "no evidence"):
            out[metric_name(str(r["arm"]), "verdict")] = {"better": 1.0, "worse": -1.0}.get(r["verdict"], 0.0)
        if r["vs_best"]:
            out[metric_name(str(r["arm"]), "tied_with_best")] = float(r["vs_best"] in ("best", "tied"))
    return out


def description(c: Comparison, run_id: str, plot: str | None = PLOT) -> str:
    """The parent run's description (MLflow renders it as Markdown at the top of the run's
    page): the conclusion, one line per arm, the metric-by-arm plot (an artifact of the run),
    what the words mean and where the full report is."""
    table = compact_frame(c).to_markdown(index=False, disable_numparse=True)
    parts = [f"**{c.conclusion}**", table]
    if plot:
        parts.append(f"![{c.test_metric} by arm](get-artifact?path={plot}&run_uuid={run_id})")
    parts += [" ".join(legend(c)),
              f"Every column, the tuning curves and per-class recall: Artifacts › {REPORT}/report.html "
              f"(or `imbsweep compare {c.study} --wide`)."]
    return "\n\n".join(parts)


def log_summary(c: Comparison, record: StudyRecord) -> None:
    """The summary metrics, the one-sentence conclusion (a tag) and the description on the
    parent run; the same description on the study's experiment: MLflow 3.17 shows an
    experiment's description on top of its runs page (the first page of a study), a run's
    below the run's details."""
    import time

    from mlflow.entities import Metric, RunTag

    if not record.parent_run_id:
        return
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in summary_metrics(c).items()]
    for i in range(0, len(metrics), 500):
        record.client.log_batch(record.parent_run_id, metrics=metrics[i:i + 500])
    note = description(c, record.parent_run_id)
    record.client.log_batch(record.parent_run_id, tags=[RunTag(TAG_CONCLUSION, c.conclusion[:4900]),
                                                        RunTag(NOTE, note[:MAX_TAG])])
    record.client.set_experiment_tag(record.experiment_id, NOTE, note[:MAX_TAG])


def write_report(c: Comparison, record: StudyRecord, out_dir: Path, log_to_parent: bool = True) -> list[Path]:
    """``comparison.csv``, ``comparison.md``, the PNG plots and ``report.html`` (plots
    embedded) in ``out_dir``, also logged under ``report/`` of the study's parent run with the
    per-arm summary metrics."""
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
    images = [out_dir / "metric_by_arm.png"]
    plot_metric(c, images[0])
    if plot_per_class(c, record, out_dir / "per_class_recall.png"):
        images.append(out_dir / "per_class_recall.png")
    plot_tuning_curves(c, out_dir / "tuning_curves.png")
    images.append(out_dir / "tuning_curves.png")
    (out_dir / "report.html").write_text(to_html(c, images))
    files = [out_dir / n for n in ("comparison.csv", "comparison.md", "report.html")] + images
    if log_to_parent and record.parent_run_id:
        record.client.log_artifacts(record.parent_run_id, str(out_dir), REPORT)
        log_summary(c, record)
    return files
