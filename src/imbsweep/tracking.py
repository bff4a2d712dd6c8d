"""MLflow recording: one run per ``fit``, written through ``MlflowClient`` (no global
fluent-API state, so several runs can be recorded from one process). The client and the
experiment come from ``_client``, the artifact files from ``artifacts``, the names from
``names``."""

from __future__ import annotations

import contextlib
import getpass
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _config
from ._client import connect, writing
from ._paths import absolute_paths, git_commit
from ._signals import signals_held
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
from .trick import family, trick_label, trick_names

if TYPE_CHECKING:
    from .records import Result

log = logging.getLogger(__name__)

def hydra_choices() -> dict[str, str]:
    """The config-group options Hydra composed this job from (``loss: focal`` ...), without
    Hydra's own groups; empty outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {str(k): str(v) for k, v in choices.items() if v is not None and not str(k).startswith("hydra/")}


MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100  # MLflow's log_batch limits per request


class MlflowRun(Reporter):
    """Records one training run in MLflow.

    Use as a context manager around ``fit``: entering creates the run with the flattened,
    redacted config as params and the tags; epoch metrics (the per-class ones only with
    ``tracking.epoch_per_class``: ~20 of the 32 values an epoch, and MLflow's SQLite store
    costs ~45 us a value) are buffered and written with one
    ``log_batch`` at most every ``flush_every_s`` seconds and at the end (each SQLite
    transaction has a fixed cost besides its rows, so few large batches are
    cheapest: per-epoch writes, MLflow's asynchronous queue, a background writer thread and a
    writer process were all measured slower, see docs/benchmarks.md); leaving ends the run
    FINISHED, FAILED (failed result or exception, with the reason as a tag) or KILLED (Ctrl-C).

    A write the store does not take (a full disk, a database gone) is a ``StorageError``: the
    platform's failure, not the run's (a sweep re-queues the trial and stops; the same command
    resumes once the store takes writes again).

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
        self.run_id = ""  # the MLflow run's id, set when the run is created
        self._artifact_uri = ""
        self._refused: Exception | None = None  # the write the store refused (a StorageError)
        self.result: Result | None = None
        self._buffer: list[list[Any]] = []  # [key, value, timestamp ms, step]
        self._tags: dict[str, str] = {}  # written with the next batch of metrics
        self._curves: set[str] = set()  # the metrics logged every epoch
        self._last_flush = time.monotonic()

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        from .errors import StorageError

        try:
            with writing(self.uri, f"{what} of run {self.run_id or self.run_name!r}"):
                yield
        except StorageError as exc:
            self._refused = exc  # the store takes no writes now: see __exit__
            raise

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> MlflowRun:
        container = _config.redacted_container(self.cfg)
        container.pop(CONTEXT_KEY, None)  # a sweep's plumbing, not part of the run's config
        absolute_paths(container)  # data.path as typed is relative to the launch folder: record it absolute
        sha, dirty = git_commit()
        tags = {TAG_TRICK: trick_label(container), **start_tags("imbsweep", self.choices, sha, self.parent_run_id),
                **self.extra_tags}
        if sha:
            tags[TAG_GIT_DIRTY] = str(dirty).lower()
        # a run's name says what it is: the trick when nothing else names it (MLflow's default
        # is a random "bold-fox-123"); a run that does not complete gets its state appended
        self.run_name = self.run_name or tags[TAG_TRICK]
        self._container = container
        with signals_held(), self._writing("the creation"):  # (a Ctrl-C waits until the run's id is known)
            run = self.client.create_run(str(self.experiment_id), run_name=self.run_name, tags=tags)
            self.run_id, self._artifact_uri = run.info.run_id, run.info.artifact_uri
        try:
            params = [(k, v[:6000]) for k, v in _config.flatten(container) if not k.startswith("hydra.")]
            params += list(trick_names(container).items())  # loss.name=ldam beside loss._target_
            self._batch(params=params)
        except BaseException as exc:  # (a with statement does not call __exit__ when __enter__ fails)
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Ends the run. A run whose writes the store refused ends FAILED where the store still
        takes that (else a sweep's next command ends it, as a dead worker's), and the refusal
        goes on as a ``StorageError`` in place of what ended the run (a prune, a failure: the
        run's record is not whole, so a sweep re-queues the trial), but for a Ctrl-C."""
        if not self.run_id:
            return
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        if self._refused is None:
            self._end(exc_type, exc, interrupted)
        if self._refused is not None:
            with contextlib.suppress(Exception):  # one quiet try (the store may refuse it again)
                end_failed(self.client, self.run_id, f"{type(self._refused).__name__}: {self._refused}",
                           self.run_name)
            if not interrupted and exc is not self._refused:
                raise self._refused

    def _end(self, exc_type: type[BaseException] | None, exc: BaseException | None, interrupted: bool) -> None:
        reason: str | None
        if interrupted:
            status, state, reason = "KILLED", KILLED, "interrupted (Ctrl-C)"
        elif exc is not None and getattr(exc, "imbsweep_state", None) == PRUNED:
            status, state, reason = "FINISHED", PRUNED, str(exc)
        elif exc is not None:
            status, state, reason = "FAILED", FAILED, f"{type(exc).__name__}: {exc}"
        elif self.result is not None and self.result.state == FAILED:
            status, state, reason = "FAILED", FAILED, self.result.reason
        else:
            status, state, reason = "FINISHED", COMPLETE, None
        self._tags.update(end_tags(state, reason, self.run_name))
        from .errors import StorageError

        try:
            self._flush()  # the last metrics and the tags, in one write
            if state != COMPLETE and self.log_artifacts:  # what it ran with (a complete run has it already)
                self._files({"texts": {"config.yaml": _config.to_yaml(self._container)}})
        except StorageError:
            return  # (kept in self._refused)
        except Exception as error:  # noqa: BLE001 - ending the run matters more than its name or files
            log.warning("could not record how run %s ended: %s", self.run_id, error)
        try:
            with self._writing("the end"):
                self.client.set_terminated(self.run_id, status=status)
        except StorageError:
            pass  # (kept in self._refused)
        except Exception:
            if exc_type is None:
                raise
            log.warning("could not record how run %s ended", self.run_id)  # the exception that ended it goes on

    # -- reporter ---------------------------------------------------------------------------
    def on_fit_start(self, info: FitInfo) -> None:
        self._tags[TAG_DEVICE] = info.device  # written with the next metrics
        if info.dataset is not None:  # what it trains on: an MLflow dataset input (the UI's Dataset column)
            from .data import dataset_spec, not_evaluated

            ds = info.dataset
            from .data import dataset_input

            with self._writing("the dataset input"):
                self.client.log_inputs(self.run_id, datasets=[dataset_input(dataset_spec(ds))])
            self._tags[TAG_DATA_DIGEST] = str(ds.meta.get("digest", ""))
            gone = "; ".join(f"{s}: {', '.join(c)}" for s, c in not_evaluated(ds).items() if c)
            if gone:  # classes a split does not hold: no recall there (per_class.csv leaves it empty)
                self._tags[TAG_NOT_EVALUATED] = gone[:5000]

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
            self._batch(metrics=buf, tags=tags)
        self._last_flush = time.monotonic()

    def _batch(self, metrics: Sequence[Any] = (), params: Sequence[Any] = (),
               tags: Mapping[str, str] | None = None) -> None:
        with self._writing("metrics, params or tags"):
            log_batch(self.client, self.run_id, metrics, params, tags or {})

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
                         "title": f"test confusion matrix ({family(self._container['loss'])})"}
        self._files({"texts": texts, "tables": tables, "confusion": confusion})

    def _files(self, files: dict[str, Any]) -> None:
        """The run's artifact files (``artifacts.write_files``: each whole or absent): straight
        into the run's folder on a local store, else through ``log_artifacts``. A write that
        fails is tried once more (a disk full for a moment), then it is the store's failure."""
        import tempfile
        from pathlib import Path

        from .artifacts import local_dir, write_files
        from .errors import StorageError

        texts, tables, confusion = files.get("texts") or {}, files.get("tables") or {}, files.get("confusion")
        where = local_dir(self._artifact_uri)
        for attempt in (1, 2):
            try:
                with self._writing("the artifact files"):
                    if where is not None:
                        write_files(where, texts, tables, confusion)
                    else:
                        with tempfile.TemporaryDirectory() as tmp:
                            write_files(Path(tmp), texts, tables, confusion)
                            self.client.log_artifacts(self.run_id, tmp)
                return
            except StorageError as exc:
                if attempt == 2:
                    raise
                log.warning("could not write the artifact files of run %s (%s); trying once more", self.run_id,
                            exc.__cause__)
                self._refused = None  # (not yet: the second try decides)
                time.sleep(1.0)


def log_batch(client: Any, run_id: str, metrics: Sequence[Any], params: Sequence[Any],
              tags: Mapping[str, str]) -> None:
    """``[key, value, timestamp ms, step]`` metrics, ``[key, value]`` params and tags in as few
    ``log_batch`` calls as MLflow's limits allow (a batch holds at most 1000 values in all)."""
    from mlflow.entities import Metric, Param, RunTag

    ms = [Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in metrics]
    ps = [Param(k, v) for k, v in params]
    ts_ = [RunTag(k, v) for k, v in tags.items()]
    per = MAX_METRICS - MAX_TAGS - MAX_PARAMS
    for i in range(max(-(-len(ms) // per), -(-len(ts_) // MAX_TAGS), -(-len(ps) // MAX_PARAMS))):
        client.log_batch(run_id, metrics=ms[i * per:(i + 1) * per], params=ps[i * MAX_PARAMS:(i + 1) * MAX_PARAMS],
                         tags=ts_[i * MAX_TAGS:(i + 1) * MAX_TAGS])


def end_failed(client: Any, run_id: str, why: str, name: str | None = None) -> None:
    """End a run FAILED with ``why`` as its reason and description, ``failed`` after its name."""
    log_batch(client, run_id, [], [], end_tags(FAILED, why, name or client.get_run(run_id).info.run_name))
    client.set_terminated(run_id, status="FAILED")


def start_tags(source: str, choices: Mapping[str, Any], commit: str | None,
               parent_run_id: str | None) -> dict[str, str]:
    """A run's tags as it starts: RUNNING, who ran what from which commit (MLflow's own tags, as
    its fluent API sets them), the config groups' options, the parent run."""
    tags = {TAG_STATE: RUNNING, USER: getpass.getuser(), SOURCE_TYPE: "LOCAL", SOURCE_NAME: source,
            **{TAG_CHOICE + str(g): str(o) for g, o in choices.items()}}
    if commit:
        tags[GIT_COMMIT] = commit
    if parent_run_id:
        tags[PARENT_RUN] = parent_run_id
    return tags


def end_tags(state: str, reason: str | None, name: str) -> dict[str, str]:
    """A run's tags as it ends: its state, the reason (also as the run's description, which the
    UI shows in full on the run's page) and, but for a complete run, the state after its name."""
    tags = {TAG_STATE: state}
    if reason:
        tags[TAG_PRUNE_REASON if state == PRUNED else TAG_REASON] = str(reason)[:5000]
        tags[NOTE] = f"{state}: {reason}"[:5000]
    if state != COMPLETE:
        tags[RUN_NAME] = f"{name} {state}"
    return tags


def _per_class(key: str) -> bool:
    return "/recall/" in key or "/precision/" in key
