"""The study's parent run in MLflow: one experiment per study, one parent run per study
(found again and reused on resume), the trials as its child runs."""

from __future__ import annotations

import getpass
import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from .._client import connect, writing
from .._paths import git_commit
from .._signals import signals_held
from .._stores import redact
from ..names import (
    APP_OTHER,
    APP_OWN,
    ATTR_ARM,
    ATTR_FAIL_REASON,
    ATTR_REQUEUED,
    ATTR_RUN_ID,
    COMMAND_FILE,
    GIT_COMMIT,
    ROLE_PARENT,
    SOURCE_NAME,
    SOURCE_TYPE,
    TAG_APP,
    TAG_APP_NAME,
    TAG_ARM,
    TAG_BASELINE_ARM,
    TAG_BEST_TRIAL,
    TAG_OBJECTIVES,
    TAG_POSTHOC_ARMS,
    TAG_POSTHOC_KINDS,
    TAG_REASON,
    TAG_ROLE,
    TAG_SEED_KEY,
    TAG_STUDY,
    TAG_STUDY_DATA,
    TAG_TRIAL,
    USER,
)
from ..tracking import end_failed
from ._counts import best_trial, counts

log = logging.getLogger(__name__)


PROGRESS_EVERY_S = 2.0  # at least this many seconds between two batches of the parent run's progress points


def common_params(trials: Sequence[optuna.trial.FrozenTrial]) -> list[str]:
    """The parameters every one of ``trials`` has: what importances are computed over."""
    return sorted(set.intersection(*(set(t.params) for t in trials))) if trials else []


# long: the parent run's whole life: found or made, tagged, its progress and plots, dead runs ended
class ParentRun:
    """Context manager: the parent run is RUNNING inside, then FINISHED, KILLED (Ctrl-C) or
    FAILED (the sweep stopped on an error)."""

    def __init__(self, config: DictConfig, study_name: str, sweeper_conf: Mapping[str, Any],
                 owner: bool = True, baseline_arm: str | None = None,
                 posthoc_arms: Mapping[str, str] | None = None, data: Mapping[str, str] | None = None,
                 posthoc_kinds: Mapping[str, str] | None = None, app: Any = None) -> None:
        self.app = app  # _app.App: what the study's trials return, how its app runs again
        self.uri, self.client, self.experiment_id = connect(config, study_name)
        # progress points wait for the next log_progress at least PROGRESS_EVERY_S after the last
        # batch (short trials: one write for many; long trials: each point at once)
        self._points: list[Any] = []
        self._studies: Sequence[optuna.Study] = ()  # what the points count (the best trial is read at the batch)
        self._sent = float("-inf")
        self.study_name = study_name
        self.data = dict(data) if data else None  # what the study trains on (imbsweep.data.identity)
        self.sweeper_conf = {k: v for k, v in dict(sweeper_conf).items() if k != "_target_"}
        self.owner = owner  # a started worker only attaches its trials; it never ends the parent
        self.run_id = ""
        try:
            # Ctrl-C waits until the run's id is known here, so that what follows can end it
            with signals_held(), writing(self.uri, f"the parent run of study {study_name!r}"):
                self.run_id = self._find_or_create()
            with writing(self.uri, f"the parent run of study {study_name!r}"):
                self._tag_arms(baseline_arm, posthoc_arms, posthoc_kinds)
        except BaseException as exc:
            if self.run_id:  # (else none was made RUNNING)
                self.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def _tag_arms(self, baseline_arm: str | None, posthoc_arms: Mapping[str, str] | None,
                  posthoc_kinds: Mapping[str, str] | None) -> None:
        if baseline_arm is not None and self.owner:
            self.client.set_tag(self.run_id, TAG_BASELINE_ARM, baseline_arm)
            if posthoc_arms:
                import json

                self.client.set_tag(self.run_id, TAG_POSTHOC_ARMS, json.dumps(dict(posthoc_arms)))
                self.client.set_tag(self.run_id, TAG_POSTHOC_KINDS, json.dumps(
                    {a: (posthoc_kinds or {}).get(a, "posthoc") for a in posthoc_arms}))
            else:
                tags = self.client.get_run(self.run_id).data.tags
                for tag in (TAG_POSTHOC_ARMS, TAG_POSTHOC_KINDS):
                    if tag in tags:  # resumed without them
                        self.client.delete_tag(self.run_id, tag)

    def _find_or_create(self) -> str:
        found = self.client.search_runs(
            [self.experiment_id], f"tags.`{TAG_ROLE}` = '{ROLE_PARENT}' and tags.`{TAG_STUDY}` = '{self.study_name}'",
            max_results=1, order_by=["attributes.start_time ASC"])
        if found:
            run_id = str(found[0].info.run_id)
            if self.data:  # a study stays on one dataset; checked before the run is marked RUNNING
                from ..data import check_study_data

                recorded = found[0].data.tags.get(TAG_STUDY_DATA)
                check_study_data(recorded, self.data, self.study_name)
                if recorded is None and self.owner:  # a study recorded before the tag existed
                    self.client.set_tag(run_id, TAG_STUDY_DATA, json.dumps(self.data))
            if self.owner:
                self.client.update_run(run_id, status="RUNNING")
            return run_id
        sha, _ = git_commit()
        if self.app is not None and not self.app.own:  # another app's commit, not imbsweep's
            from .._paths import git_commit_of

            sha = git_commit_of(self.app.source or self.app.cwd)
        tags = {TAG_ROLE: ROLE_PARENT, TAG_STUDY: self.study_name, USER: getpass.getuser(),
                SOURCE_NAME: "imbsweep sweep", SOURCE_TYPE: "LOCAL"}
        if sha:
            tags[GIT_COMMIT] = sha
        if self.data:
            tags[TAG_STUDY_DATA] = json.dumps(self.data)
        run = self.client.create_run(self.experiment_id, run_name=f"{self.study_name} (study)", tags=tags)
        return str(run.info.run_id)

    def __enter__(self) -> ParentRun:
        if not self.owner:
            return self
        try:
            with writing(self.uri, f"the settings of study {self.study_name!r}"):
                self._log_settings()
        except BaseException as exc:  # (a with statement does not call __exit__ when __enter__ fails)
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def _log_settings(self) -> None:
        conf = OmegaConf.to_container(OmegaConf.create(self.sweeper_conf), resolve=True)
        assert isinstance(conf, dict)
        if conf.get("storage"):
            conf["storage"] = redact(str(conf["storage"]))
        if conf.get("tracking_uri"):
            conf["tracking_uri"] = redact(str(conf["tracking_uri"]))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "sweep.yaml"
            path.write_text(OmegaConf.to_yaml(OmegaConf.create(conf)))
            self.client.log_artifact(self.run_id, str(path))
            if self.app is not None:
                self._log_app(Path(tmp))

    def _log_app(self, tmp: Path) -> None:
        """What ``compare`` and ``export`` need to know of the app: its objectives, its seed key,
        and the command that runs it (``command.json``: program, arguments and launch folder,
        credentials in URLs hidden), for ``compare --reseed``."""
        from mlflow.entities import RunTag

        app = self.app
        tags = {TAG_APP: APP_OWN if app.own else APP_OTHER, TAG_APP_NAME: app.name,
                TAG_OBJECTIVES: json.dumps([list(o) for o in app.objectives])}
        if app.seed_key:
            tags[TAG_SEED_KEY] = app.seed_key
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        if app.own:  # (its re-runs and exports are made from each trial's config.yaml)
            return
        from .._config import redact_override

        command = {"program": [redact(a) for a in app.program or []], "argv": [redact_override(a) for a in app.argv],
                   "cwd": app.cwd, "config_dir": app.config_dir}
        (tmp / COMMAND_FILE).write_text(json.dumps(command, indent=1))
        self.client.log_artifact(self.run_id, str(tmp / COMMAND_FILE))

    def log_progress(self, studies: Sequence[optuna.Study]) -> None:
        """The study's counts (and best value) as metrics of the parent run, stepped by the
        trials finished; its best trial as a tag."""
        from mlflow.entities import Metric

        c = counts(studies)
        metrics: dict[str, float] = {"trials_finished": c["finished"], "trials_pruned": c["pruned"],
                                     "trials_failed": c["fail"]}
        best = self._best(studies) if c["complete"] else None
        if best is not None:
            metrics["best_value"] = float(best.values[0])
        now = int(time.time() * 1000)
        self._points += [Metric(k, float(v), now, int(c["finished"])) for k, v in metrics.items()]
        self._studies = studies
        if time.monotonic() - self._sent >= PROGRESS_EVERY_S:
            self.flush_progress()

    def _best(self, studies: Sequence[optuna.Study]) -> optuna.trial.FrozenTrial | None:
        directions = studies[0].directions
        return best_trial(studies, directions[0].name.lower()) if len(directions) == 1 else None

    @staticmethod
    def _best_tag(best: optuna.trial.FrozenTrial | None) -> dict[str, str]:
        if best is None:
            return {}
        arm = best.user_attrs.get(ATTR_ARM)
        return {TAG_BEST_TRIAL: f"{arm} {best.number}" if arm else str(best.number)}

    def flush_progress(self) -> None:
        """The progress points not written yet, each with its own step and time, in one batch,
        with the best trial as it is now (other workers may have found a better one since)."""
        from mlflow.entities import RunTag

        if not self._points:
            return
        points, self._points = self._points, []
        tags = self._best_tag(self._best(self._studies)) if self._studies else {}
        with writing(self.uri, f"the progress of study {self.study_name!r}"):
            self.client.log_batch(self.run_id, metrics=points, tags=[RunTag(k, v) for k, v in tags.items()])
        self._sent = time.monotonic()

    def log_study_artifacts(self, studies: Sequence[optuna.Study], results: Path | None) -> None:
        """Optuna's optimization history (every arm's, in a tournament) and parameter
        importances (a plain study: importances across arms would compare knobs that exist
        in one arm only) as PNGs (single objective), and ``optimization_results.yaml``, as
        artifacts of the parent run."""
        import warnings

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as ov

        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna.visualization.matplotlib is experimental
            out = Path(tmp)
            if results is not None and results.exists():
                (out / results.name).write_text(results.read_text())
            complete = [t for s in studies for t in s.get_trials(deepcopy=False)
                        if t.state == optuna.trial.TrialState.COMPLETE]
            single = len(studies) == 1
            if len(studies[0].directions) == 1 and complete:
                for name, draw in (("optimization_history.png", ov.plot_optimization_history),
                                   ("param_importances.png", ov.plot_param_importances)):
                    if name == "param_importances.png" and (not single or len(complete) < 2
                                                            or not complete[0].params):
                        continue
                    target: Any = studies[0] if single else [s for s in studies if s.get_trials(deepcopy=False)]
                    kwargs: dict[str, Any] = {}
                    if name == "param_importances.png":
                        # over the parameters every trial has: a conditional one (an LDAM-only
                        # knob) is seen only where its condition holds, and would mislead
                        common = common_params(complete)
                        if not common:
                            self.client.set_tag(self.run_id, f"imbsweep.{name}.skipped",
                                                "no parameter is searched in every trial")
                            continue
                        kwargs["params"] = common
                    try:
                        ax = draw(target, **kwargs)
                    except (ValueError, RuntimeError) as exc:  # e.g. importances of a constant space
                        self.client.set_tag(self.run_id, f"imbsweep.{name}.skipped", str(exc)[:500])
                        continue
                    fig = ax.get_figure(root=True)
                    assert fig is not None
                    fig.tight_layout()
                    fig.savefig(out / name, dpi=90)
                    plt.close(fig)
            if any(out.iterdir()):
                self.client.log_artifacts(self.run_id, str(out))

    def _runs_of(self, trial: optuna.trial.FrozenTrial, arm: str | None) -> list[str]:
        """The RUNNING MLflow runs of ``trial``: the one it names, else those tagged with its
        study, arm and number (a worker killed between creating the run and naming it on the
        trial left an orphan that only the tags find)."""
        run_id = trial.user_attrs.get(ATTR_RUN_ID)
        if run_id:
            return [str(run_id)]
        arm = trial.user_attrs.get(ATTR_ARM) or arm
        query = (f"tags.`{TAG_STUDY}` = '{self.study_name}' and tags.`{TAG_TRIAL}` = '{trial.number}' "
                 "and attributes.status = 'RUNNING'")
        found = self.client.search_runs([self.experiment_id], query, max_results=100)
        return [str(r.info.run_id) for r in found if r.data.tags.get(TAG_ARM) == arm
                and r.data.tags.get(TAG_ROLE) is None]

    def end_dead_runs(self, trials: list[optuna.trial.FrozenTrial], arm: str | None = None,
                      reason: str | None = None) -> None:
        """The MLflow runs of trials whose worker (or launcher job) died, or that the platform
        cut, end FAILED (they were left RUNNING), with ``reason`` or the trial's own (the one
        its re-queueing gave it)."""
        with writing(self.uri, f"the end of study {self.study_name!r}'s runs of trials re-queued"):
            for t in trials:
                why = reason or (f"{t.user_attrs.get(ATTR_FAIL_REASON) or 'worker process died'}"
                                 f"{'; trial re-queued' if t.user_attrs.get(ATTR_REQUEUED) else ''}")[:5000]
                for run_id in self._runs_of(t, arm):  # arm: the trial's study's, if it does not say
                    end_failed(self.client, run_id, why)

    def end_orphans(self, arms: Sequence[Any]) -> None:
        """Trial runs still RUNNING whose Optuna trial is finished end FAILED: their trial was
        re-queued (or told its outcome) while the store refused to end them."""
        found = self.client.search_runs(
            [self.experiment_id], f"tags.`{TAG_STUDY}` = '{self.study_name}' and attributes.status = 'RUNNING'",
            max_results=1000)
        if not found:
            return
        finished = {(a.name, t.number): t for a in arms for t in a.study.get_trials(deepcopy=False)
                    if t.state.is_finished()}
        with writing(self.uri, f"the end of study {self.study_name!r}'s runs left RUNNING"):
            for r in found:
                tags = r.data.tags
                if tags.get(TAG_ROLE) is not None or not tags.get(TAG_TRIAL, "").isdigit():
                    continue  # (the parent run)
                t = finished.get((tags.get(TAG_ARM), int(tags[TAG_TRIAL])))
                if t is not None:
                    end_failed(self.client, r.info.run_id,
                               f"{t.user_attrs.get(ATTR_FAIL_REASON) or 'its trial ended'}; its run was ended by "
                               "the next command")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.flush_progress()
        except Exception as error:  # noqa: BLE001 - the run's end matters more
            if exc is None:  # (else the error that stops the sweep says more)
                log.warning("the study's last progress points were not recorded: %s", error)
        if not self.owner:
            return
        status = "KILLED" if exc_type is not None and issubclass(exc_type, KeyboardInterrupt) else (
            "FAILED" if exc is not None else "FINISHED")
        try:
            with writing(self.uri, f"the end of study {self.study_name!r}'s parent run"):
                if status == "FAILED":
                    self.client.set_tag(self.run_id, TAG_REASON, str(exc)[:5000])
                self.client.set_terminated(self.run_id, status=status)
        except Exception:
            if exc is None:
                raise
            # the error that stops the sweep goes on; the next command takes the parent run up again
            log.debug("the parent run of %s was not ended", self.study_name, exc_info=True)
