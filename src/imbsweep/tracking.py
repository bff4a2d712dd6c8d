"""MLflow recording: one run per ``fit``, written through ``MlflowClient`` (no global
fluent-API state, so several runs can be recorded from one process). The client and the
experiment come from ``_client``, the artifact files from ``artifacts``, the names from
``names``."""

from __future__ import annotations

import contextlib
import getpass
import logging
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _config
from ._client import connect, tracking_uri
from ._paths import absolute_paths, git_commit, state_of
from ._spool import enabled, spool_for
from .artifacts import per_class_columns, posthoc_columns
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
    SPOOL,
    TAG_CHOICE,
    TAG_DATA_DIGEST,
    TAG_DEVICE,
    TAG_GIT_DIRTY,
    TAG_NOT_EVALUATED,
    TAG_PRUNE_REASON,
    TAG_REASON,
    TAG_RECORD,
    TAG_STATE,
    TAG_TRICK,
    USER,
    selected_key,
)
from .reporting import FitInfo, Reporter
from .trick import trick_label

if TYPE_CHECKING:  # training imports torch: a reader of the store (compare, export) does not need it
    from pathlib import Path

    from .training import Result

log = logging.getLogger(__name__)

def hydra_choices() -> dict[str, str]:
    """The config-group options Hydra composed this job from (``loss: focal`` ...), without
    Hydra's own groups; empty outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {str(k): str(v) for k, v in choices.items() if v is not None and not str(k).startswith("hydra/")}


class _Direct:
    """A run's operations applied at once, in this process (``_writer.Applier``)."""

    def __init__(self, uri: str, client: Any) -> None:
        from ._writer import Applier

        self.applier = Applier(uri, client)
        self.submit = self.applier.apply
        self._n = 0

    def new_key(self) -> str:
        self._n += 1
        return f"r{self._n}"

    def record_tag(self, key: str) -> str | None:
        return None

    def run_id(self, key: str) -> str:
        return self.applier.run_id(key)

    def artifact_dir(self, key: str) -> Path | None:
        from ._writer import local_dir

        return local_dir(self.applier.runs[key][1])

    def training(self, on: bool) -> None:
        pass


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

    What it writes are ``_writer`` operations, applied in this process, or, with ``spool``
    on a local SQLite store, appended to a spool file that a writer process applies while
    this one goes on (``_spool``): a sweep's trial then costs its training, not MLflow's
    per-row writes. ``run_id`` then waits for the writer to have created the run.

    Args:
        cfg: the composed config.
        client: an ``mlflow.MlflowClient``; built from ``cfg.tracking`` when omitted.
        experiment_id: defaults to ``cfg.tracking.experiment`` (created if missing).
        tags: extra tags (a sweeper adds trial number and study).
        parent_run_id: makes this a child run (``mlflow.parentRunId``).
        choices: the config-group options, tagged ``imbsweep.choice.<group>``; by default
            Hydra's runtime choices (a run re-created outside Hydra passes its original's).
        spool: hand the writes to a writer process (needs ``experiment_id``; only where
            ``_spool.enabled``: the local SQLite store and ``tracking.spool``, else ignored).
    """

    def __init__(self, cfg: Any, client: Any = None, experiment_id: str | None = None,
                 tags: Mapping[str, str] | None = None, parent_run_id: str | None = None,
                 run_name: str | None = None, choices: Mapping[str, str] | None = None,
                 spool: bool = False) -> None:
        tr = cfg.tracking
        uri = tracking_uri(tr, state_of(cfg))
        self.sink: Any
        if spool and experiment_id and client is None and enabled(uri, tr):
            self.uri, self.experiment_id = uri, experiment_id
            self.sink = spool_for(uri, state_of(cfg) / SPOOL)
        else:
            self.uri, client, found = connect(cfg, None if experiment_id else str(tr.experiment), client)
            self.experiment_id = experiment_id or found
            self.sink = _Direct(self.uri, client)
        self.cfg = cfg
        self.flush_every_s = float(tr.get("flush_every_s", 30.0))
        self.log_artifacts = bool(tr.get("artifacts", True))
        self.epoch_per_class = bool(tr.get("epoch_per_class", False))
        self.extra_tags = dict(tags or {})
        self.parent_run_id = parent_run_id
        self.run_name = run_name or tr.get("run_name")
        self.choices = dict(hydra_choices() if choices is None else choices)
        self.key = ""  # the run's key in the sink, set when the run is created
        self.result: Result | None = None
        self._buffer: list[list[Any]] = []  # [key, value, timestamp ms, step]
        self._tags: dict[str, str] = {}  # written with the next batch of metrics
        self._curves: set[str] = set()  # the metrics logged every epoch
        self._last_flush = time.monotonic()

    @property
    def run_id(self) -> str:
        """The MLflow run's id ("" before the run is created)."""
        return self.sink.run_id(self.key) if self.key else ""

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> MlflowRun:
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
        key = self.sink.new_key()
        record = self.sink.record_tag(key)
        if record:
            tags[TAG_RECORD] = record
        # a run's name says what it is: the trick when nothing else names it (MLflow's default
        # is a random "bold-fox-123"); a run that does not complete gets its state appended
        self.run_name = self.run_name or tags[TAG_TRICK]
        self.sink.submit({"op": "create", "key": key, "experiment_id": str(self.experiment_id),
                          "run_name": self.run_name, "tags": tags})
        self.key = key
        params = [[k, v[:6000]] for k, v in _config.flatten(container) if not k.startswith("hydra.")]
        self.sink.submit({"op": "batch", "key": key, "params": params})
        self._container = container
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.key:
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
                self._files({"texts": {"config.yaml": _config.to_yaml(self._container)}})
        except Exception:  # noqa: BLE001 - ending the run matters more than its name or files
            log.exception("could not record how run %s ended", self.key)
        finally:
            try:
                self.sink.submit({"op": "end", "key": self.key, "status": status})
            except Exception:
                if exc_type is None:
                    raise
                log.exception("could not record how run %s ended", self.key)  # the exception that ended it goes on
            finally:  # (a run that never reached on_fit_end: its training is over too)
                with contextlib.suppress(Exception):  # a writer gone: said by the writes above
                    self.sink.training(False)

    def training(self) -> None:
        """Training begins: the writer process holds this run's writes until the training's end
        (``on_fit_end``, or the run's end; at most ``_writer.HOLD_S``) but for run creations, so
        that a waiting :attr:`run_id` comes at once (called again at ``on_fit_start``)."""
        if self.key:
            self.sink.training(True)

    # -- reporter ---------------------------------------------------------------------------
    def on_fit_start(self, info: FitInfo) -> None:
        self._tags[TAG_DEVICE] = info.device  # written with the next metrics
        if info.dataset is not None:  # what it trains on: an MLflow dataset input (the UI's Dataset column)
            from .data import dataset_spec, not_evaluated

            ds = info.dataset
            self.sink.submit({"op": "inputs", "key": self.key, "dataset": dataset_spec(ds)})
            self._tags[TAG_DATA_DIGEST] = str(ds.meta.get("digest", ""))
            gone = "; ".join(f"{s}: {', '.join(c)}" for s, c in not_evaluated(ds).items() if c)
            if gone:  # classes a split does not hold: no recall there (per_class.csv leaves it empty)
                self._tags[TAG_NOT_EVALUATED] = gone[:5000]
        self.training()  # the run's writes wait for its training's end, or a while

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        logged = [(k, v) for k, v in metrics.items() if self.epoch_per_class or not _per_class(k)]
        self._curves.update(k for k, _ in logged)
        self._buffer += [[k, float(v), now, epoch] for k, v in logged]  # fit cleaned them
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self._flush()

    def on_fit_end(self, result: Result) -> None:
        """The selected epoch's values of what has a curve (and every ``val/`` value) go
        under :func:`selected_key` (``val/selected/balanced_acc``), at the selected epoch's
        step: the curves hold the epochs only, and the runs table can show the selected value
        beside the last one. Values measured once (``test/…``, ``posthoc/tau``,
        ``best_epoch``) keep their names. ``results`` reads them back under the curve's name."""
        self.sink.training(False)  # the training is over: the writer goes on with this run's writes
        self.result = result
        now = int(time.time() * 1000)
        complete = result.state == COMPLETE
        step = result.best_epoch if complete else result.epochs_run
        for k, v in result.metrics.items():
            if k in self._curves or k.startswith("val/"):
                if complete:
                    self._buffer.append([selected_key(k), float(v), now, step])
            else:
                self._buffer.append([k, float(v), now, step])
        if self.log_artifacts and result.state == COMPLETE:
            self._write_artifacts(result)

    def _flush(self) -> None:
        """The buffered metrics and tags, in one operation (split by MLflow's limits where it
        is applied)."""
        buf, self._buffer = self._buffer, []
        tags, self._tags = self._tags, {}
        if buf or tags:
            self.sink.submit({"op": "batch", "key": self.key, "metrics": buf, "tags": tags})
        self._last_flush = time.monotonic()

    def _write_artifacts(self, result: Result) -> None:
        """config.yaml (its text made here), per_class.csv, posthoc.csv (their columns) and
        the test confusion matrix's PNG (see :meth:`_files`)."""
        texts = {"config.yaml": _config.to_yaml(self._container)}
        tables = {"per_class.csv": per_class_columns(result)}
        if result.posthoc is not None:
            tables["posthoc.csv"] = posthoc_columns(result)
        confusion = None
        if result.test is not None:
            confusion = {"matrix": result.test.confusion.tolist(), "names": list(result.class_names),
                         "title": f"test confusion matrix ({self._container['loss']['name']})"}
        self._files({"texts": texts, "tables": tables, "confusion": confusion})

    def _files(self, files: dict[str, Any]) -> None:
        """The run's artifact files: written here when its folder is a local one (a short
        trial's writer process, which applies its other records, is busier than this one),
        else handed to the sink as an operation (``_writer.Applier``)."""
        where = self.sink.artifact_dir(self.key)
        if where is not None:
            from ._writer import write_files

            try:
                write_files(where, files.get("texts") or {}, files.get("tables") or {}, files.get("confusion"))
                return
            except Exception as exc:  # noqa: BLE001 - a trial that trained is not failed by its files
                log.warning("could not write the artifact files of run %s here (%s); handed to the writer",
                            self.key, exc)
        self.sink.submit({"op": "files", "key": self.key, **files})


def _per_class(key: str) -> bool:
    return "/recall/" in key or "/precision/" in key
