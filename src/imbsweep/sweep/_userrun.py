"""The MLflow run of one trial (or re-run) of another app than imbsweep's: created and described
before the app's task function runs, MLflow's active run while it runs, ended however it ends.

The run ends through the sweep's own client whatever the task did with MLflow's fluent API:
runs it started and left open are ended, a tracking URI or experiment it set does not move
the trial's run. Credentials never reach the record: the config's values whose key names one,
and URL passwords, are hidden in params, ``config.yaml``, ``overrides.yaml`` and tags."""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .._config import HIDDEN, flatten, redact_override, redact_tree, to_yaml
from .._paths import git_commit_of
from ..names import (
    COMPLETE,
    TAG_ARM,
    TAG_OVERRIDES,
    TAG_STUDY,
    TAG_TRIAL,
    TAG_TRICK,
    mlflow_name_ok,
)
from ..tracking import end_tags, start_tags

log = logging.getLogger(__name__)


def config_container(cfg: DictConfig) -> dict[str, Any]:
    """The app's config as plain values, resolved where it resolves, credentials hidden."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - an interpolation that resolves only inside the app: as written
        container = OmegaConf.to_container(cfg, resolve=False)
    out = redact_tree(container)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}


def recorded_overrides(overrides: Sequence[str]) -> list[str]:
    """A job's overrides as the record keeps them: credentials hidden."""
    return [redact_override(str(o)) for o in overrides]


def hidden(override: str) -> bool:
    """Whether a recorded override's value was hidden (it cannot be run again as it is)."""
    return override.partition("=")[2] == HIDDEN or f":{HIDDEN}@" in override


class UserRun:
    """One trial's MLflow run in the store at ``uri`` (see the module docstring)."""

    def __init__(self, client: Any, uri: str) -> None:
        self.client, self.uri = client, uri
        self.run_id = ""
        self._env: dict[str, str | None] = {}
        self._active = False
        self._below: Any = None  # the fluent API's active run before ours (an app run inside another's)

    def create(self, hc: Any, ctx: Mapping[str, Any], source: str | None = None) -> str:
        """The run, RUNNING, with its tags (study, trial, arm, parent run, the app's choices)."""
        arm = ctx.get("arm")
        choices = {g: o for g, o in hc.runtime.choices.items() if o is not None and not str(g).startswith("hydra/")}
        sha = git_commit_of(source or str(hc.runtime.cwd))  # (the app's checkout, not imbsweep's)
        tags = {TAG_STUDY: str(ctx["study"]), TAG_TRICK: str(arm or ctx["study"]),
                **start_tags(str(hc.job.name), choices, sha, str(ctx["parent_run_id"]))}
        if "number" in ctx:
            tags[TAG_TRIAL] = str(ctx["number"])
        if arm:
            tags[TAG_ARM] = str(arm)
        tags.update({str(k): str(v) for k, v in (ctx.get("tags") or {}).items()})
        name = ctx.get("run_name") or f"{arm or ctx['study']} trial-{ctx.get('number')}"
        self.run_id = str(self.client.create_run(str(ctx["experiment_id"]), run_name=str(name), tags=tags).info.run_id)
        return self.run_id

    def describe(self, cfg: DictConfig, hc: Any) -> None:
        """The flattened config as params (keys MLflow refuses as names left out, with a
        warning), ``config.yaml`` and ``overrides.yaml`` as artifacts (what ``export`` and
        ``compare --reseed`` read back), the overrides as a tag."""
        import yaml
        from mlflow.entities import Param, RunTag

        container = config_container(cfg)
        pairs = list(dict(flatten(container)).items())  # (a key flattened twice: once)
        refused = [k for k, _ in pairs if not mlflow_name_ok(k)]
        if refused:
            log.warning("config keys MLflow does not take as param names are left out of the run's params "
                        "(config.yaml has them): %s", ", ".join(refused[:10]))
        params = [Param(k, v[:6000]) for k, v in pairs if mlflow_name_ok(k)]
        for i in range(0, len(params), 100):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        overrides = recorded_overrides(hc.overrides.task)
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "config.yaml").write_text(to_yaml(container))
            Path(tmp, "overrides.yaml").write_text(yaml.safe_dump(overrides, default_flow_style=False))
            self.client.log_artifacts(self.run_id, tmp)
        self.client.log_batch(self.run_id, tags=[RunTag(TAG_OVERRIDES, " ".join(overrides)[:5000])])

    def activate(self, experiment_id: str) -> None:
        """The run becomes MLflow's active run (``mlflow.log_metric`` in the task lands in it),
        the fluent API's tracking URI and experiment the trial's."""
        import mlflow

        self._below = mlflow.active_run()
        # (set_tracking_uri and set_experiment set these variables too, for subprocesses)
        self._env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")}
        self._active = True
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_experiment(experiment_id=experiment_id)  # (one the task set would refuse the run)
        mlflow.start_run(run_id=self.run_id, nested=self._below is not None)

    def end(self, objectives: Sequence[tuple[str, str]], values: Sequence[float], status: str, state: str,
            reason: str, last_step: int | None) -> None:
        """The returned values under the objectives' names (at the last step ``imbsweep.report``
        reported: MLflow's latest value of a metric is the one of its highest step), the state
        tags; the run's end. Always ends the run, through the sweep's client."""
        from mlflow.entities import Metric, RunTag

        try:
            self._pop()
            # (the name as it is now: the task may have renamed the run)
            tags = end_tags(state, reason, self.client.get_run(self.run_id).info.run_name if state != COMPLETE else "")
            self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])  # (the state first)
            now = int(time.time() * 1000)
            metrics = []
            for (name, _), v in zip(objectives, values, strict=False):
                if math.isfinite(v):  # at the highest step the metric has, so that it is the run's value
                    history = self.client.get_metric_history(self.run_id, name)  # (the curve, or the task's own)
                    step = max([0 if last_step is None else last_step, *(m.step for m in history)])
                    metrics.append(Metric(name, float(v), now, step))
            if metrics:
                self.client.log_batch(self.run_id, metrics=metrics)
        finally:
            self.client.set_terminated(self.run_id, status=status)

    def _pop(self) -> None:
        """Off MLflow's active-run stack: the runs the task started and left open (ended), then
        ours (ended by :meth:`end`); the fluent API's tracking URI as it was before the trial."""
        if not self._active:
            return
        import mlflow

        try:
            mlflow.set_tracking_uri(self.uri)  # (the task may have moved it)
            while (run := mlflow.active_run()) is not None and (self._below is None
                                                                or run.info.run_id != self._below.info.run_id):
                mine = run.info.run_id == self.run_id
                try:
                    mlflow.end_run("RUNNING" if mine else "FINISHED")  # (pops first; ours is ended below)
                except Exception as exc:  # noqa: BLE001 - popped already; ours is ended by the client
                    log.warning("could not end MLflow run %s: %s", run.info.run_id, exc)
                if mine:
                    break
        finally:
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # as it was: unset, or the variable's value
            for k, v in self._env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            self._active = False
