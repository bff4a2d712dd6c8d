"""MLflow recording: one run per ``fit``, written through ``MlflowClient`` (no global
fluent-API state, so several runs can be recorded from one process)."""

from __future__ import annotations

import contextlib
import getpass
import logging
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _config
from ._paths import absolute_paths, git_commit, local_tracking_uri, state_dir
from .reporting import FitInfo, Reporter
from .trick import trick_label

if TYPE_CHECKING:  # training imports torch: a reader of the store (compare, export) does not need it
    from .training import Result

log = logging.getLogger(__name__)

MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100  # MLflow's log_batch limits per request
RUN_NAME = "mlflow.runName"  # a tag MLflow's log_batch turns into the run's name
TAG_STATE, TAG_REASON, TAG_TRICK = "imbsweep.state", "imbsweep.failure_reason", "imbsweep.trick"
TAG_ROLE, TAG_STUDY = "imbsweep.role", "imbsweep.study"  # parent / reseed runs; the study of a run
TAG_ARM, TAG_BASELINE_ARM = "imbsweep.arm", "imbsweep.baseline_arm"  # a tournament's arm; on the parent run
TAG_POSTHOC_ARMS = "imbsweep.posthoc_arms"  # on the parent run: JSON {post-hoc arm: its source arm}
TAG_POSTHOC_KINDS = "imbsweep.posthoc_kinds"  # on the parent run: JSON {post-hoc arm: posthoc | taunorm}
NOTE = "mlflow.note.content"  # a run's description in the MLflow UI
SELECTED = "selected"  # a curve's value at the selected epoch: val/balanced_acc -> val/selected/balanced_acc
TAG_CHOICE = "imbsweep.choice."  # + group: the option Hydra composed (what `imbsweep export` writes)
TAG_DATA_DIGEST = "imbsweep.data.digest"  # the digest of the data a run trained on (a user's file: its bytes)
TAG_NOT_EVALUATED = "imbsweep.data.not_evaluated"  # classes a split holds no example of


def selected_key(key: str) -> str:
    """Where a metric with a curve logs its selected epoch's value: ``val/selected/balanced_acc``.
    The MLflow UI sorts its chart sections by name, and ``val/selected`` follows ``val``, so
    these single points come after the curves instead of before them."""
    head, sep, rest = key.partition("/")
    return f"{head}/{SELECTED}/{rest}" if sep else f"{SELECTED}/{key}"


def curve_key(key: str) -> str | None:
    """The metric whose selected value ``key`` holds (the inverse of :func:`selected_key`),
    None for any other key."""
    head, sep, rest = key.partition("/")
    if head == SELECTED and sep:
        return rest
    mid, sep2, tail = rest.partition("/")
    return f"{head}/{tail}" if sep and mid == SELECTED and sep2 else None


def hydra_choices() -> dict[str, str]:
    """The config-group options Hydra composed this job from (``loss: focal`` ...), without
    Hydra's own groups; empty outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {str(k): str(v) for k, v in choices.items() if v is not None and not str(k).startswith("hydra/")}


def tracking_uri(tracking_cfg: Mapping[str, Any], state: str | Path = "mlruns") -> str:
    """The configured URI, else MLflow on SQLite in the local state folder."""
    uri = tracking_cfg.get("uri")
    return str(uri) if uri else local_tracking_uri(state_dir(state))


_CLIENTS: dict[str, Any] = {}


def make_client(uri: str) -> Any:
    """An ``MlflowClient``, one per URI and process (MLflow keeps one store per URI anyway;
    this skips the checks below for every later run of a sweep). A local SQLite store is
    created (schema migrations) under a file lock, so several workers starting together on a
    fresh store do not collide, and is put in WAL mode, so readers (``mlflow ui``, another
    process searching runs) never block a training run's writes ("database is locked")."""
    if uri in _CLIENTS:
        return _CLIENTS[uri]
    from mlflow import MlflowClient

    quiet_mlflow_logs()
    if not uri.startswith("sqlite:///"):
        from ._stores import sqlalchemy_url  # postgresql:// means psycopg 3 to SQLAlchemy: use psycopg2

        # a server retries its own 5xx answers; what is left to retry here is an insert race
        return _CLIENTS.setdefault(uri, _Client(MlflowClient(tracking_uri=sqlalchemy_url(uri)), attempts=4,
                                                locked=False))
    import fcntl

    db = Path(uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".init.lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)  # the store exists and is migrated now
            _use_wal(db)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return _CLIENTS.setdefault(uri, _Client(client))


class _Client:
    """An ``MlflowClient`` whose writes are not cut in half by Ctrl-C, and whose calls on a
    local SQLite store retry briefly on "database is locked".

    Ctrl-C (or SIGTERM) that lands inside a write is held until the write ends, then
    delivered as usual: a KeyboardInterrupt raised inside SQLAlchemy's commit or connection
    return can leave the pooled SQLite connection holding the write lock, and the run's own
    last write (tagging it KILLED) then waited on its own process for MLflow's 20 s busy
    timeout, retry after retry. Reads (``get_*``, ``search_*``, ``list_*``, ``download_*``)
    stay interruptible. Even in WAL mode SQLite answers a read-then-write transaction that
    meets another process's commit with SQLITE_BUSY at once, without its busy timeout; the
    failed transaction was rolled back, so calling again is safe.

    On every store, local or behind ``mlflow server``, a write that lost an insert race is
    retried too: MLflow's ``set_tag`` and its latest-metric update are a select-then-insert
    (SQLAlchemy's ``merge``), so two workers tagging the study's parent run at the same moment
    can both insert, and the second fails on the unique key (the server answers 400
    BAD_REQUEST with the database's message). Its transaction was rolled back; the retry
    finds the row and updates it."""

    _READS = ("get_", "search_", "list_", "download_")
    # SQLite's and PostgreSQL's words for a unique key another writer inserted first
    _RACES = ("UNIQUE constraint failed", "duplicate key value violates unique constraint")

    def __init__(self, client: Any, attempts: int = 8, locked: bool = True) -> None:
        self._client, self._attempts = client, attempts
        self._retried = (("database is locked",) if locked else ()) + self._RACES

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        guard = contextlib.nullcontext if name.startswith(self._READS) else signals_held

        def call(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(self._attempts):
                try:
                    with guard():
                        return attr(*args, **kwargs)
                except Exception as exc:
                    if attempt == self._attempts - 1 or not any(r in str(exc) for r in self._retried):
                        raise
                    time.sleep(0.1 * (attempt + 1))
            raise AssertionError("unreachable")

        return call


@contextlib.contextmanager
def signals_held(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """SIGINT/SIGTERM arriving inside the block are delivered, with the handlers that were in
    place, when it ends (only the first; a no-op outside the main thread, where Python runs
    no signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: held.append(signum))
                for s in signums if signal.getsignal(s) is not None}  # None: set outside Python
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if held:
            signal.raise_signal(held[0])


def _use_wal(db: Path) -> None:
    """Switch a SQLite file to write-ahead logging (persistent; a no-op when it already is)."""
    import sqlite3

    con = sqlite3.connect(db, timeout=30)
    try:
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as exc:  # another process holds it; the next start retries
        log.warning("could not switch %s to WAL mode: %s", db, exc)
    finally:
        con.close()


def quiet_mlflow_logs() -> None:
    """MLflow's and alembic's INFO lines (schema migrations) are noise on a user's console."""
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)


def connect(cfg: Any, experiment: str | None, client: Any = None) -> tuple[str, Any, str]:
    """The tracking URI and client that ``cfg.tracking`` names, and the id of ``experiment``
    (created if new; on the local store its artifacts go under ``<state_dir>/artifacts``)."""
    state = state_dir(cfg.get("state_dir") or "mlruns")
    uri = tracking_uri(cfg.tracking, state)
    client = client or make_client(uri)
    if experiment is None:
        return uri, client, ""
    local = uri.startswith("sqlite:///") and not cfg.tracking.get("uri")
    return uri, client, get_or_create_experiment(client, experiment, state / "artifacts" if local else None)


#: the experiment tag the MLflow 3 UI reads to choose its view: without it, it may open an
#: experiment as GenAI (traces, token usage) instead of on its runs
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def ui_link(base: str, route: str) -> str:
    """A link into the MLflow UI at ``base`` that opens ``route`` (``experiments/1``) in its
    model-training view: MLflow 3.17's UI picks its view from a global GenAI / model-training
    switch (default GenAI, remembered in the browser), which the ``workflowType`` parameter
    sets; the experiment tag alone does not."""
    return f"{base}/#/{route}?workflowType=machine_learning"


def deleted_experiment(exp: Any) -> str:
    """What to do about a deleted MLflow experiment (its name is taken until it is purged)."""
    return (f"is a deleted MLflow experiment (id {exp.experiment_id}), whose name stays taken: restore it "
            f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or use another name")


def get_or_create_experiment(client: Any, name: str, artifact_root: Path | None) -> str:
    """The experiment's id; created (with local artifacts under ``artifact_root``) if new,
    and tagged as model training (:data:`EXPERIMENT_KIND`; an older one gets the tag too)."""
    from mlflow.exceptions import MlflowException

    key, kind = EXPERIMENT_KIND
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":  # MLflow would refuse the run with "must be active"
            from .errors import ConfigError

            raise ConfigError("tracking.experiment", name, deleted_experiment(exp))
        if key not in exp.tags:
            client.set_experiment_tag(exp.experiment_id, key, kind)
        return str(exp.experiment_id)
    location = (artifact_root / name).as_uri() if artifact_root else None
    try:
        return str(client.create_experiment(name, artifact_location=location, tags={key: kind}))
    except MlflowException:  # another process created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)


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
        container.pop("imbsweep_trial", None)  # a sweep's plumbing, not part of the run's config
        absolute_paths(container)  # data.path as typed is relative to the launch folder: record it absolute
        sha, dirty = git_commit()
        tags = {TAG_TRICK: trick_label(container), TAG_STATE: "running",
                "mlflow.user": getpass.getuser(), "mlflow.source.type": "LOCAL",
                "mlflow.source.name": "imbsweep",
                **{TAG_CHOICE + g: o for g, o in self.choices.items()}, **self.extra_tags}
        if sha:
            tags["mlflow.source.git.commit"] = sha
            tags["imbsweep.git_dirty"] = str(dirty).lower()
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
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
            status, state, reason = "KILLED", "killed", "interrupted (Ctrl-C)"
        elif exc is not None and getattr(exc, "imbsweep_state", None) == "pruned":
            status, state, reason = "FINISHED", "pruned", str(exc)
        elif exc is not None:
            status, state, reason = "FAILED", "failed", f"{type(exc).__name__}: {exc}"
        elif self.result is not None and self.result.state == "failed":
            status, state, reason = "FAILED", "failed", self.result.reason
        else:
            status, state, reason = "FINISHED", "complete", None
        reason_tag = "imbsweep.prune_reason" if state == "pruned" else TAG_REASON
        # the reason also as the run's description, which the UI shows in full on the run's page
        self._tags.update({TAG_STATE: state, **({reason_tag: str(reason)[:5000], NOTE: f"{state}: {reason}"[:5000]}
                                                if reason else {})})
        if state != "complete":
            self._tags[RUN_NAME] = f"{self.run_name} {state}"
        try:
            self._flush()  # the last metrics and the tags, in one write
            if state != "complete" and self.log_artifacts:  # what it ran with (a complete run has it already)
                self._write_files(lambda out: (out / "config.yaml").write_text(_config.to_yaml(self._container)))
        except Exception:  # noqa: BLE001 - ending the run matters more than its name or files
            log.exception("could not record how run %s ended", self.run_id)
        finally:
            self.client.set_terminated(self.run_id, status=status)

    # -- reporter ---------------------------------------------------------------------------
    def on_fit_start(self, info: FitInfo) -> None:
        self._tags["imbsweep.device"] = info.device  # written with the next metrics
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
        complete = result.state == "complete"
        step = result.best_epoch if complete else result.epochs_run
        for k, v in result.metrics.items():
            if k in self._curves or k.startswith("val/"):
                if complete:
                    self._buffer.append(Metric(selected_key(k), float(v), now, step))
            else:
                self._buffer.append(Metric(k, float(v), now, step))
        if self.log_artifacts and result.state == "complete":
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


def per_class_table(result: Result) -> Any:
    """One row per class: its label, training count, shot group, val/test support, recall and
    precision, and its metric key (``val/recall/<key>``); a class a split does not hold has no
    recall there (empty, not 0: it was not evaluated)."""
    import pandas as pd

    from .metrics import class_keys

    counts = result.train_class_counts
    groups = result.shots.of(counts)
    rows: dict[str, Any] = {
        "class": list(result.class_names), "train_count": counts,
        "shot": [next(g for g, m in groups.items() if m[i]) for i in range(len(counts))],
    }
    for split, ev in (("val", result.val), ("test", result.test)):
        if ev is not None:
            rows[f"{split}_support"] = ev.support
            rows[f"{split}_recall"] = np.where(ev.support > 0, np.round(ev.recall, 6), np.nan)
            rows[f"{split}_precision"] = np.round(ev.precision, 6)
    rows["key"] = class_keys(result.class_names)  # last: readers of the older columns keep their order
    return pd.DataFrame(rows)


def posthoc_table(result: Result) -> Any:
    """The post-hoc tau scan: one row per tau, the metric on validation (which picks tau)
    and on test (reported only)."""
    import pandas as pd

    scan = result.posthoc
    assert scan is not None
    return pd.DataFrame({"tau": scan.taus, f"val_{scan.metric}": np.round(scan.val, 6),
                         f"test_{scan.metric}": np.round(scan.test, 6),
                         "picked": [t == scan.tau for t in scan.taus]})


_FONTS: dict[int, Any] = {}


def _font(size: int) -> Any:
    """matplotlib's DejaVu Sans at ``size`` px, loaded once per process, whose rendered glyph
    masks are kept: a confusion matrix draws the same ~100 short labels in every run, and
    FreeType's rendering of them was a third of drawing it (the pixels are the same)."""
    if size not in _FONTS:
        import matplotlib
        from PIL import ImageFont

        class CachedFont(ImageFont.FreeTypeFont):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self._masks: dict[Any, Any] = {}

            def getmask2(self, text: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
                try:
                    key = (text, args, tuple(sorted(kwargs.items())))
                    hash(key)
                except TypeError:
                    return super().getmask2(text, *args, **kwargs)
                if key not in self._masks:
                    self._masks[key] = super().getmask2(text, *args, **kwargs)
                return self._masks[key]

        ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        _FONTS[size] = CachedFont(str(ttf), size)
    return _FONTS[size]


def plot_confusion(cm: np.ndarray, names: tuple[str, ...], title: str, path: Path) -> None:
    """Row-normalised confusion matrix (recall on the diagonal) as a PNG.

    Drawn with Pillow rather than a matplotlib figure: one PNG per run, and matplotlib's text
    layout for ~100 cell labels cost ~0.08 s a run, most of what recording a run cost beside
    its metrics (see the tracking-overhead section of docs/benchmarks.md). Colours (``Blues``)
    and font (DejaVu Sans) are matplotlib's own, so it looks like the report's plots.
    """
    import matplotlib
    from PIL import Image, ImageDraw

    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    n = len(names)
    cell = int(np.clip(560 // max(n, 1), 8, 44))
    font, small = _font(12), _font(max(7, min(11, cell // 4)))
    label = max((font.getlength(s) for s in names), default=0.0)
    vertical = n > 12 or label > cell  # column labels that would overlap are turned 90 degrees
    col_h = int(label) + 6 if vertical else 18
    left, top, pad = int(label) + 30, 34, 12
    side = n * cell
    width = max(left + side + pad, int(font.getlength(title)) + 2 * pad)
    img = Image.new("RGB", (width, top + side + col_h + 24), "white")
    rgba = matplotlib.colormaps["Blues"](np.clip(norm, 0, 1), bytes=True)
    img.paste(Image.fromarray(rgba[..., :3]).resize((side, side), Image.Resampling.NEAREST),
              (left, top))
    d = ImageDraw.Draw(img)
    d.rectangle((left - 1, top - 1, left + side, top + side), outline="black")
    d.text((width / 2, 16), title, fill="black", font=font, anchor="mm")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                d.text((left + (j + 0.5) * cell, top + (i + 0.5) * cell), f"{norm[i, j]:.2f}",
                       fill="white" if norm[i, j] > 0.5 else "black", font=small, anchor="mm")
    for k, name in enumerate(names):
        mid = k * cell + cell // 2
        d.text((left - 5, top + mid), name, fill="black", font=font, anchor="rm")
        if vertical:
            w = int(font.getlength(name)) + 2
            tile = Image.new("RGB", (w, 16), "white")
            ImageDraw.Draw(tile).text((0, 8), name, fill="black", font=font, anchor="lm")
            tile = tile.rotate(90, expand=True)
            img.paste(tile, (left + mid - 8, top + side + 4 + col_h - 6 - w))
        else:
            d.text((left + mid, top + side + 4), name, fill="black", font=font, anchor="mt")
    d.text((left + side / 2, top + side + col_h + 12), "predicted", fill="black", font=font,
           anchor="mm")
    axis = Image.new("RGB", (60, 16), "white")
    ImageDraw.Draw(axis).text((30, 8), "true", fill="black", font=font, anchor="mm")
    img.paste(axis.rotate(90, expand=True), (2, top + side // 2 - 30))
    img.save(path, compress_level=1)  # zlib's fastest level: same pixels, a few KB larger
