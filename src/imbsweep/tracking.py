"""MLflow recording: one run per ``fit``, written through ``MlflowClient`` (no global
fluent-API state, so several runs can be recorded from one process). The client and the
experiment come from ``_client``, the artifact files from ``artifacts``, the names from
``names``."""

from __future__ import annotations

import getpass
import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _config
from ._client import connect
from ._paths import absolute_paths, git_commit
from .artifacts import per_class_table, plot_confusion, posthoc_table
from .names import (
    COMPLETE,
    CONTEXT_KEY,
    FAILED,
    GIT_COMMIT,
    KILLED,
    NOTE,
    PARENT_RUN,
    PRUNED,
    RUN_NAME,
    RUNNING,
    SOURCE_NAME,
    SOURCE_TYPE,
    TAG_CHOICE,
    TAG_DATA_DIGEST,
    TAG_DEVICE,
    TAG_GIT_DIRTY,
    TAG_NOT_EVALUATED,
    TAG_PRUNE_REASON,
    TAG_REASON,
    TAG_STATE,
    TAG_TRICK,
    USER,
    selected_key,
)
from .reporting import FitInfo, Reporter
from .trick import trick_label

if TYPE_CHECKING:  # training imports torch: a reader of the store (compare, export) does not need it
    from .training import Result

log = logging.getLogger(__name__)

MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100  # MLflow's log_batch limits per request


def hydra_choices() -> dict[str, str]:
    """The config-group options Hydra composed this job from (``loss: focal`` ...), without
    Hydra's own groups; empty outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {str(k): str(v) for k, v in choices.items() if v is not None and not str(k).startswith("hydra/")}


class MlflowRun(Reporter):
    """Records one training run in MLflow.

    Use as a context manager around ``fit``: entering creates the run with the flattened,
    redacted config as params and the tags; epoch metrics (the per-class ones only with
    ``tracking.epoch_per_class``: ~20 of the 32 values an epoch, and MLflow's SQLite store
    costs ~45 us a value) are buffered and written with one
    ``log_batch`` at most every ``flush_every_s`` seconds and at the end (each SQLite
    transaction has a fixed cost besides its rows, so few large batches are
    cheapest: per-epoch writes, MLflow's asynchronous queue and a background writer thread
    were all measured slower, see docs/benchmarks.md); leaving ends the run FINISHED,
    FAILED (failed result or exception, with the reason as a tag) or KILLED (Ctrl-C).

    Args:
        cfg: the composed config.
        client: an ``mlflow.MlflowClient``; built from ``cfg.tracking`` when omitted.
        experiment_id: defaults to ``cfg.tracking.experiment`` (created if missing).
        tags: extra tags (a sweeper adds trial number and study).
        parent_run_id: makes this a child run (``mlflow.parentRunId``).
        choices: the config-group options, tagged ``imbsweep.choice.<group>``; by default
            Hydra's runtime choices (a run re-created outside Hydra passes its original's).
    """

    def __init__(self, cfg: Any, client: Any = None, experiment_id: str | None = None,
                 tags: Mapping[str, str] | None = None, parent_run_id: str | None = None,
                 run_name: str | None = None, choices: Mapping[str, str] | None = None) -> None:
        tr = cfg.tracking
        self.uri, self.client, found = connect(cfg, None if experiment_id else str(tr.experiment), client)
        self.experiment_id = experiment_id or found
        self.cfg = cfg
        self.flush_every_s = float(tr.get("flush_every_s", 30.0))
        self.log_artifacts = bool(tr.get("artifacts", True))
        self.epoch_per_class = bool(tr.get("epoch_per_class", False))
        self.extra_tags = dict(tags or {})
        self.parent_run_id = parent_run_id
        self.run_name = run_name or tr.get("run_name")
        self.choices = dict(hydra_choices() if choices is None else choices)
        self.run_id = ""  # set when the run is created
        self.result: Result | None = None
        self._buffer: list[Any] = []
        self._tags: dict[str, str] = {}  # written with the next batch of metrics
        self._curves: set[str] = set()  # the metrics logged every epoch
        self._last_flush = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> MlflowRun:
        from mlflow.entities import Param

        container = _config.redacted_container(self.cfg)
        container.pop(CONTEXT_KEY, None)  # a sweep's plumbing, not part of the run's config
        absolute_paths(container)  # data.path as typed is relative to the launch folder: record it absolute
        sha, dirty = git_commit()
        tags = {TAG_TRICK: trick_label(container), TAG_STATE: RUNNING,
                USER: getpass.getuser(), SOURCE_TYPE: "LOCAL", SOURCE_NAME: "imbsweep",
                **{TAG_CHOICE + g: o for g, o in self.choices.items()}, **self.extra_tags}
        if sha:
            tags[GIT_COMMIT] = sha
            tags[TAG_GIT_DIRTY] = str(dirty).lower()
        if self.parent_run_id:
            tags[PARENT_RUN] = self.parent_run_id
        # a run's name says what it is: the trick when nothing else names it (MLflow's default
        # is a random "bold-fox-123"); a run that does not complete gets its state appended
        self.run_name = self.run_name or tags[TAG_TRICK]
        run = self.client.create_run(self.experiment_id, run_name=self.run_name, tags=tags)
        self.run_id, self.artifact_uri = run.info.run_id, run.info.artifact_uri
        params = [Param(k, v[:6000]) for k, v in _config.flatten(container)
                  if not k.startswith("hydra.")]
        for i in range(0, len(params), MAX_PARAMS):
            self.client.log_batch(self.run_id, params=params[i:i + MAX_PARAMS])
        self._container = container
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.run_id:
            return
        reason: str | None
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            status, state, reason = "KILLED", KILLED, "interrupted (Ctrl-C)"
        elif exc is not None and getattr(exc, "imbsweep_state", None) == PRUNED:
            status, state, reason = "FINISHED", PRUNED, str(exc)
        elif exc is not None:
            status, state, reason = "FAILED", FAILED, f"{type(exc).__name__}: {exc}"
        elif self.result is not None and self.result.state == FAILED:
            status, state, reason = "FAILED", FAILED, self.result.reason
        else:
            status, state, reason = "FINISHED", COMPLETE, None
        reason_tag = TAG_PRUNE_REASON if state == PRUNED else TAG_REASON
        # the reason also as the run's description, which the UI shows in full on the run's page
        self._tags.update({TAG_STATE: state, **({reason_tag: str(reason)[:5000], NOTE: f"{state}: {reason}"[:5000]}
                                                if reason else {})})
        if state != COMPLETE:
            self._tags[RUN_NAME] = f"{self.run_name} {state}"
        try:
            self._flush()  # the last metrics and the tags, in one write
            if state != COMPLETE and self.log_artifacts:  # what it ran with (a complete run has it already)
                self._write_files(lambda out: (out / "config.yaml").write_text(_config.to_yaml(self._container)))
        except Exception:  # noqa: BLE001 - ending the run matters more than its name or files
            log.exception("could not record how run %s ended", self.run_id)
        finally:
            self.client.set_terminated(self.run_id, status=status)

    # -- reporter ---------------------------------------------------------------------------
    def on_fit_start(self, info: FitInfo) -> None:
        self._tags[TAG_DEVICE] = info.device  # written with the next metrics
        if info.dataset is not None:  # what it trains on: an MLflow dataset input (the UI's Dataset column)
            from .data import dataset_input, not_evaluated

            ds = info.dataset
            self.client.log_inputs(self.run_id, datasets=[dataset_input(ds)])
            self._tags[TAG_DATA_DIGEST] = str(ds.meta.get("digest", ""))
            gone = "; ".join(f"{s}: {', '.join(c)}" for s, c in not_evaluated(ds).items() if c)
            if gone:  # classes a split does not hold: no recall there (per_class.csv leaves it empty)
                self._tags[TAG_NOT_EVALUATED] = gone[:5000]

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        logged = [(k, v) for k, v in metrics.items() if self.epoch_per_class or not _per_class(k)]
        self._curves.update(k for k, _ in logged)
        self._buffer += [Metric(k, float(v), now, epoch) for k, v in logged]  # fit cleaned them
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self._flush()

    def on_fit_end(self, result: Result) -> None:
        """The selected epoch's values of what has a curve (and every ``val/`` value) go
        under :func:`selected_key` (``val/selected/balanced_acc``), at the selected epoch's
        step: the curves hold the epochs only, and the runs table can show the selected value
        beside the last one. Values measured once (``test/…``, ``posthoc/tau``,
        ``best_epoch``) keep their names. ``results`` reads them back under the curve's name."""
        from mlflow.entities import Metric

        self.result = result
        now = int(time.time() * 1000)
        complete = result.state == COMPLETE
        step = result.best_epoch if complete else result.epochs_run
        for k, v in result.metrics.items():
            if k in self._curves or k.startswith("val/"):
                if complete:
                    self._buffer.append(Metric(selected_key(k), float(v), now, step))
            else:
                self._buffer.append(Metric(k, float(v), now, step))
        if self.log_artifacts and result.state == COMPLETE:
            self._write_artifacts(result)

    def _flush(self) -> None:
        """The buffered metrics and tags, in as few ``log_batch`` calls as MLflow's limits allow."""
        from mlflow.entities import RunTag

        buf, self._buffer = self._buffer, []
        tags, self._tags = [RunTag(k, v) for k, v in self._tags.items()], {}
        per = MAX_METRICS - MAX_TAGS  # a batch holds at most 1000 values in all
        for i in range(max(-(-len(buf) // per), -(-len(tags) // MAX_TAGS))):
            self.client.log_batch(self.run_id, metrics=buf[i * per:(i + 1) * per],
                                  tags=tags[i * MAX_TAGS:(i + 1) * MAX_TAGS])
        self._last_flush = time.monotonic()

    def _write_artifacts(self, result: Result) -> None:
        self._write_files(lambda out: self._artifact_files(result, out))

    def _write_files(self, write: Any) -> None:
        """``write(folder)`` writes files that become the run's artifacts."""
        local = _local_dir(self.artifact_uri)
        if local is not None:  # a local store: written in place (no copy, no get_run)
            local.mkdir(parents=True, exist_ok=True)
            write(local)
            return
        with tempfile.TemporaryDirectory() as tmp:
            write(Path(tmp))
            self.client.log_artifacts(self.run_id, tmp)

    def _artifact_files(self, result: Result, out: Path) -> None:
        (out / "config.yaml").write_text(_config.to_yaml(self._container))
        per_class_table(result).to_csv(out / "per_class.csv", index=False)
        if result.posthoc is not None:
            posthoc_table(result).to_csv(out / "posthoc.csv", index=False)
        if result.test is not None:
            plot_confusion(result.test.confusion, result.class_names,
                           f"test confusion matrix ({self._container['loss']['name']})",
                           out / "confusion_matrix.png")


def _local_dir(uri: str) -> Path | None:
    """The folder of a ``file:`` (or scheme-less) artifact URI; None for any other store."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    return Path(uri) if not parsed.scheme else None


def _per_class(key: str) -> bool:
    return "/recall/" in key or "/precision/" in key
