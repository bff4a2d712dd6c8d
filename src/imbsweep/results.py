"""A study's record read back from MLflow into pandas: what ``compare`` and ``export`` use.

Everything comes from ``MlflowClient.search_runs`` against the study's experiment, so it
works on any tracking URI (the local SQLite store, a tracking server, PostgreSQL) and from
any process. The frame has one row per run in MLflow's ``search_runs`` column convention
(``run_id``, ``status``, ``metrics.<name>``, ``params.<key>``, ``tags.<key>``) plus

- ``role``: ``trial`` (a sweep trial) or ``reseed`` (``compare --reseed``); the parent run
  is kept apart;
- ``trial`` (int), ``state`` (complete/pruned/failed/running/killed), ``trick``;
- ``arm``: the ``imbsweep.arm`` tag of a tournament's runs, else the trick label (a study
  without arms compares its tricks). Trial numbers count within an arm: (arm, trial) is a key;
- ``replicate``: the seed index of a ``--reseed`` run (the ``imbsweep.replicate`` tag, else its
  ``trainer.seed``): replicates are paired across arms on it.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ImbsweepError
from .names import (
    APP_OWN,
    COMPLETE,
    FAILED,
    PRUNED,
    ROLE_PARENT,
    ROLE_RESEED,
    ROLE_TRIAL,
    RUNNING,
    STATE_DIR,
    TAG_APP,
    TAG_ARM,
    TAG_BASELINE_ARM,
    TAG_CHOICE,
    TAG_OBJECTIVES,
    TAG_POSTHOC_ARMS,
    TAG_POSTHOC_KINDS,
    TAG_REPLICATE,
    TAG_ROLE,
    TAG_STATE,
    TAG_STUDY,
    TAG_TRIAL,
    TAG_TRICK,
    curve_key,
    selected_key,
)

#: metrics where smaller is better, for a ``--metric`` that is not the study's objective
MINIMIZED = ("loss", "ece", "nll", "brier", "time", "error", "err", "rmse", "mse", "mae", "perplexity", "regret")


class StudyError(ImbsweepError):
    """A study that cannot be compared or exported as asked (unknown, empty, bad metric)."""


@dataclass
class StudyRecord:
    """One study's runs in one MLflow store."""

    name: str
    uri: str
    client: Any
    experiment_id: str
    parent_run_id: str | None
    runs: Any  # pandas.DataFrame, see the module docstring (a one-row sample when not read)
    objectives: list[tuple[str, str]] = field(default_factory=list)
    complete: bool = True  # the study has a complete trial
    parent_tags: dict[str, str] = field(default_factory=dict)
    sweep_settings: dict[str, Any] | None = None  # the parent's sweep.yaml, once read (compare)

    @property
    def own_app(self) -> bool:
        """Whether the study swept imbsweep's own training app (its parent run's ``imbsweep.app``;
        a study recorded before the tag existed is imbsweep's)."""
        return self.parent_tags.get(TAG_APP, APP_OWN) == APP_OWN

    @property
    def seed_key(self) -> str | None:
        """The config key ``compare --reseed`` sets: the one the sweep recorded, else imbsweep's
        app's ``trainer.seed``; None for another app that named none."""
        from .names import TAG_SEED_KEY

        return self.parent_tags.get(TAG_SEED_KEY) or ("trainer.seed" if self.own_app else None)

    def selection(self, metric: str | None) -> tuple[str, str]:
        """``(metric, direction)`` each arm's best trial is picked on: ``metric`` (imbsweep's
        app: a validation metric), else the study's objective; another app's trials are always
        picked on what they returned (``metric`` is then only what compare reports)."""
        if self.own_app or not self.objectives:
            return self.metric_direction(metric)
        return self.objectives[0]

    @property
    def baseline_arm(self) -> str | None:
        """The sweep's declared baseline arm (its parent run's tag), None without one."""
        return self.parent_tags.get(TAG_BASELINE_ARM) or None

    @property
    def posthoc_arms(self) -> dict[str, str]:
        """``{arm: source arm}``: the sweep's arms that re-score their source arm's trials
        after post-hoc logit adjustment (``hydra.sweeper.posthoc_arms``)."""
        import json

        text = self.parent_tags.get(TAG_POSTHOC_ARMS)
        return {str(k): str(v) for k, v in json.loads(text).items()} if text else {}

    @property
    def posthoc_kinds(self) -> dict[str, str]:
        """``{arm: kind}`` for every post-hoc arm: ``posthoc`` (logit adjustment; also every arm
        recorded before there were other kinds) or ``taunorm`` (tau-normalisation), the suffix
        of the metrics it reads."""
        import json

        text = self.parent_tags.get(TAG_POSTHOC_KINDS)
        kinds = {str(k): str(v) for k, v in json.loads(text).items()} if text else {}
        return {a: kinds.get(a, "posthoc") for a in self.posthoc_arms}

    @property
    def trials(self) -> Any:
        return self.runs[self.runs["role"] == ROLE_TRIAL]

    @property
    def reseeds(self) -> Any:
        return self.runs[self.runs["role"] == ROLE_RESEED]

    def metric_direction(self, metric: str | None) -> tuple[str, str]:
        """``(metric, direction)``: the study's first objective when ``metric`` is None; a
        metric that no run logged is an error naming the ones that were."""
        if metric is None:
            if not self.objectives:
                raise StudyError(f"study {self.name!r}: no run records objective.metric; pass --metric")
            return self.objectives[0]
        logged = sorted(c[len("metrics."):] for c in self.runs.columns if c.startswith("metrics."))
        if f"metrics.{metric}" not in self.runs.columns or self.runs[f"metrics.{metric}"].isna().all():
            shown = ", ".join(m for m in logged if (m.startswith(("val/", "test/")) or not self.own_app)
                              and "/recall/" not in m)
            raise StudyError(f"--metric={metric!r}: never logged in study {self.name!r}; logged: {shown}")
        for m, d in self.objectives:
            if m == metric:
                return m, d
        import re

        pieces = re.split(r"[/_.\-]", metric.lower())  # val/loss, val_loss, test-error
        return metric, "minimize" if any(p.startswith(MINIMIZED) for p in pieces if p) else "maximize"


def tracking_client(tracking_uri: str | None, state: str | os.PathLike[str] = STATE_DIR,
                    connect_timeout: float | None = None) -> tuple[str, Any]:
    """``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else the local store in ``state``; a
    URI MLflow cannot use, or a server that does not answer within ``connect_timeout`` seconds
    (default 8), is a one-line error naming where the URI came from."""
    from ._client import make_client
    from ._client import tracking_uri as configured
    from ._paths import state_dir
    from ._stores import CONNECT_TIMEOUT_S, check_timeout, check_tracking_uri

    local = configured({}, state_dir(state))
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or local
    timeout = CONNECT_TIMEOUT_S if connect_timeout is None else check_timeout("--connect-timeout", connect_timeout)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise StudyError(f"no MLflow store at {uri}; run a sweep first (imbsweep sweep smoke) "
                         "or pass --tracking-uri / --state-dir")
    if uri != local:
        check_tracking_uri(uri, "--tracking-uri" if tracking_uri else "MLFLOW_TRACKING_URI", timeout,
                           "--connect-timeout")
    return uri, make_client(uri)


def known_studies(client: Any) -> list[str]:
    """The studies this store has a parent run for."""
    exps = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    if not exps:
        return []
    parents = client.search_runs(exps, f"tags.`{TAG_ROLE}` = '{ROLE_PARENT}'", max_results=1000)
    return sorted({str(r.data.tags.get(TAG_STUDY)) for r in parents if r.data.tags.get(TAG_STUDY)})


def search_all(client: Any, experiment_ids: list[str], filter_string: str = "") -> list[Any]:
    """Every run matching the filter (``search_runs`` pages through at most 1000 at a time).

    Python's cyclic garbage collector is paused meanwhile: MLflow's SQL store builds one ORM
    object per param, metric and tag (~170 a run), and the collections that so many new
    objects trigger, each walking everything already loaded, were half of the time a
    1000-run study took to read (bench/compare_scale.py)."""
    out: list[Any] = []
    token = None
    with gc_paused():
        while True:
            page = client.search_runs(experiment_ids, filter_string, max_results=1000, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off meanwhile, as it was after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def to_frame(runs: list[Any]) -> Any:
    """Runs as a DataFrame in ``mlflow.search_runs``'s column convention, plus role, trial,
    state and trick (see the module docstring)."""
    import pandas as pd

    rows = []
    for r in runs:
        row: dict[str, Any] = {"run_id": r.info.run_id, "status": r.info.status, "start_time": r.info.start_time}
        row.update({f"metrics.{k}": v for k, v in r.data.metrics.items()})
        # the selected epoch's value of a metric with a curve (tracking.selected_key) is the run's value
        row.update({f"metrics.{c}": v for k, v in r.data.metrics.items() if (c := curve_key(k)) is not None})
        row.update({f"params.{k}": v for k, v in r.data.params.items()})
        row.update({f"tags.{k}": v for k, v in r.data.tags.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    tag = df.get
    df["role"] = tag(f"tags.{TAG_ROLE}", pd.Series(index=df.index, dtype=object)).fillna(ROLE_TRIAL)
    df["trial"] = pd.to_numeric(tag(f"tags.{TAG_TRIAL}", pd.Series(index=df.index, dtype=float)),
                                errors="coerce").astype("Int64")
    df["state"] = tag(f"tags.{TAG_STATE}", pd.Series(index=df.index, dtype=object)).fillna(RUNNING)
    df["trick"] = tag(f"tags.{TAG_TRICK}", pd.Series(index=df.index, dtype=object)).fillna("?")
    df["arm"] = tag(f"tags.{TAG_ARM}", pd.Series(index=df.index, dtype=object)).fillna(df["trick"])
    seed = pd.to_numeric(tag("params.trainer.seed", pd.Series(index=df.index, dtype=float)), errors="coerce")
    df["replicate"] = pd.to_numeric(tag(f"tags.{TAG_REPLICATE}", pd.Series(index=df.index, dtype=float)),
                                    errors="coerce").fillna(seed).astype("Int64")
    return df


def objectives_of(runs: Any) -> list[tuple[str, str]]:
    """The study's objective(s) as its runs recorded them: ``objective.metrics`` (several,
    a Pareto front) when set, else ``objective.metric`` / ``objective.direction``."""
    done = runs[runs["state"] == "complete"]
    if done.empty or "params.objective.metric" not in done.columns:
        return []
    first = done.iloc[0]
    many = first.get("params.objective.metrics")
    if isinstance(many, str) and many not in ("None", "[]", ""):
        parsed = ast.literal_eval(many)
        return [(str(o["metric"]), str(o["direction"])) for o in parsed]
    return [(str(first["params.objective.metric"]), str(first.get("params.objective.direction", "maximize")))]


def _query(record: StudyRecord, filter_string: str, limit: int = 1, order_by: list[str] | None = None,
           token: str | None = None) -> Any:
    return record.client.search_runs([record.experiment_id], filter_string, max_results=limit,
                                     order_by=order_by, page_token=token)


def _open_lazily(record: StudyRecord) -> StudyRecord:
    """The parent run and one complete trial (for the objectives) instead of every run."""
    parent = _query(record, f"tags.`{TAG_ROLE}` = '{ROLE_PARENT}'", order_by=["attributes.start_time ASC"])
    record.parent_run_id = str(parent[0].info.run_id) if parent else None
    record.parent_tags = dict(parent[0].data.tags) if parent else {}
    sample = _query(record, f"tags.`{TAG_STATE}` = '{COMPLETE}'")
    if not sample:
        if not any(_query(record, f"tags.`{TAG_STATE}` = '{s}'") for s in (PRUNED, FAILED)):
            raise StudyError(f"study {record.name!r} has no finished trials yet (its sweep is still running, "
                             "or was stopped before the first trial ended)")
        record.complete = False
    record.runs = to_frame(list(sample))
    record.objectives = recorded_objectives(record.parent_tags) or (objectives_of(record.runs) if sample else [])
    return record


def ranked_trials(record: StudyRecord, metric: str, direction: str, limit: int, trick: str | None = None,
                  arm: str | None = None) -> Any:
    """The ``limit`` best complete trials on ``metric`` (ties: the lower trial number first),
    read with ordered ``search_runs`` pages instead of the whole study; only those of
    ``trick`` (the ``imbsweep.trick`` tag) and of ``arm`` (the ``imbsweep.arm`` tag) when given."""
    import pandas as pd

    flt = f"tags.`{TAG_STATE}` = '{COMPLETE}'"
    for key, value in ((TAG_TRICK, trick), (TAG_ARM, arm)):
        if value is not None:
            flt += f" and tags.`{key}` = '" + value.replace("'", "\\'") + "'"
    rows: list[Any] = []
    # runs log a curve's selected value as val/selected/<name>; runs recorded before, as the metric itself
    for key in (selected_key(metric), metric):
        order = [f"metrics.`{key}` {'ASC' if direction == 'minimize' else 'DESC'}"]
        token = None
        while True:
            page = _query(record, flt, max(50, 4 * limit), order, token)
            rows += [r for r in page if TAG_TRIAL in r.data.tags and TAG_ROLE not in r.data.tags
                     and key in r.data.metrics]
            token = page.token
            last = page[-1].data.metrics.get(key) if page else None
            kth = rows[limit - 1].data.metrics[key] if len(rows) >= limit else None
            if not token or last is None or (kth is not None and last != kth):
                break  # NULLs sort last; past the k-th value no tie can follow
        if rows:
            break
    df = to_frame(rows)
    if df.empty:
        return pd.DataFrame(columns=["run_id", "trial", "trick", "arm", f"metrics.{metric}"])
    return rank(df, metric, direction).head(limit)


def load_study(name: str, tracking_uri: str | None = None, state: str | os.PathLike[str] = STATE_DIR,
               client: Any = None, read_runs: bool = True, connect_timeout: float | None = None) -> StudyRecord:
    """The study ``name``'s runs (its experiment, named after it); unknown study and a study
    with no finished trial are errors that say what exists. ``read_runs=False`` reads only
    the parent run and one complete trial (``export`` then asks for the best ones);
    ``connect_timeout``: see :func:`tracking_client`."""
    if client is None:
        uri, client = tracking_client(tracking_uri, state, connect_timeout)
    else:
        uri = str(tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        known = known_studies(client)
        listed = ", ".join(known) if known else "none yet (run one: imbsweep sweep smoke)"
        raise StudyError(f"study {name!r}: not in the MLflow store {_redacted(uri)}; known studies: {listed}")
    if not read_runs:
        return _open_lazily(StudyRecord(name, uri, client, str(exp.experiment_id), None, None))
    df = to_frame(search_all(client, [exp.experiment_id]))
    parent_id, parent_tags = None, {}
    if not df.empty:
        parents = df[df["role"] == ROLE_PARENT]
        if not parents.empty:
            first = parents.sort_values("start_time").iloc[0]
            parent_id = str(first["run_id"])
            parent_tags = {str(c)[len("tags."):]: v for c, v in first.items()
                           if str(c).startswith("tags.") and isinstance(v, str)}
        df = df[df["role"] != ROLE_PARENT].reset_index(drop=True)
    record = StudyRecord(name, uri, client, str(exp.experiment_id), parent_id, df, parent_tags=parent_tags)
    if record.posthoc_arms and not df.empty:
        record.runs = with_posthoc_arms(df, record.posthoc_arms, record.posthoc_kinds)
    if df.empty or not (record.trials["state"].isin(["complete", "pruned", "failed"])).any():
        raise StudyError(f"study {name!r} has no finished trials yet (its sweep is still running, "
                         "or was stopped before the first trial ended)")
    record.objectives = recorded_objectives(parent_tags) or objectives_of(record.trials)
    record.complete = bool((record.trials["state"] == "complete").any())
    return record


def recorded_objectives(parent_tags: dict[str, str]) -> list[tuple[str, str]]:
    """The objectives the sweep recorded on its parent run (``imbsweep.objectives``), [] without."""
    import json

    text = parent_tags.get(TAG_OBJECTIVES)
    return [(str(m), str(d)) for m, d in json.loads(text)] if text else []


def with_posthoc_arms(df: Any, posthoc_arms: dict[str, str], posthoc_kinds: dict[str, str] | None = None) -> Any:
    """``df`` plus, per post-hoc arm, a copy of its source arm's trial rows under the post-hoc
    arm's name, each metric replaced by its twin of the arm's kind (``metrics.val/balanced_acc``
    <- ``metrics.val/balanced_acc_posthoc``, or ``_taunorm``). The run ids stay the source's:
    the post-hoc arm's replicates are its source's runs, read through those values
    (``posthoc_column``)."""
    import pandas as pd

    parts = [df]
    for name, source in posthoc_arms.items():
        suffix = "_" + (posthoc_kinds or {}).get(name, "posthoc")
        rows = df[(df["role"] == ROLE_TRIAL) & (df["arm"] == source)].copy()
        rows["arm"] = name
        for c in [c for c in df.columns if c.startswith("metrics.") and f"{c}{suffix}" in df.columns]:
            rows[c] = rows[f"{c}{suffix}"]
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


def posthoc_column(record: StudyRecord, arm: str, column: str) -> str:
    """The column that holds ``arm``'s value of ``column`` in its runs (and replicates): the
    twin of its kind for a post-hoc arm (``..._posthoc``, ``..._taunorm``)."""
    return f"{column}_{record.posthoc_kinds[arm]}" if arm in record.posthoc_arms else column


def _redacted(uri: str) -> str:
    from ._stores import redact

    return redact(uri)


def choices_of(row: Any) -> dict[str, str]:
    """The config-group options a run was composed from (its ``imbsweep.choice.<group>`` tags)."""
    prefix = f"tags.{TAG_CHOICE}"
    return {str(c)[len(prefix):]: v for c, v in row.items() if str(c).startswith(prefix) and isinstance(v, str)}


def rank(df: Any, metric: str, direction: str) -> Any:
    """Rows best first on ``metric``; ties go to the lower trial number."""
    return df.sort_values([f"metrics.{metric}", "trial"], ascending=[direction == "minimize", True])


def best_runs(record: StudyRecord, metric: str, direction: str, by_arm: bool = True) -> Any:
    """Complete trials ranked best first on ``metric`` (one per arm when ``by_arm``)."""
    col = f"metrics.{metric}"
    ranked = rank(record.trials[(record.trials["state"] == "complete") & record.trials[col].notna()], metric,
                  direction)
    return ranked.drop_duplicates("arm") if by_arm else ranked


def download_text(client: Any, run_id: str, path: str) -> str | None:
    """The text of one artifact of a run, or None when the run has none by that name."""
    import tempfile

    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one file: no tqdm bar
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except (MlflowException, OSError):
            return None
        p = Path(local)
        return p.read_text() if p.is_file() else None
