"""The names the store is written and read with: MLflow tags and metric keys, Optuna
attributes, states and roles, the local state's paths. Writers (``tracking``, the sweeper,
``compare --reseed``) and readers (``results``, ``compare``, ``export``) import them from
here, so a name is spelt once and a reader never imports a writer.

Imports nothing: any module may import it.
"""

from __future__ import annotations

# -- the local state -----------------------------------------------------------------------
STATE_DIR = "mlruns"  # the default local state folder (MLflow's SQLite store, artifacts, Optuna journal, data cache)
MLFLOW_DB = "mlflow.db"  # the local MLflow store, in the state folder
JOURNAL = "optuna/journal.log"  # the default Optuna storage: a journal file in the state folder
JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")  # a storage "URL" with one of these is a journal file
DATASETS = "datasets"  # the on-disk dataset cache, in the state folder
ARTIFACTS = "artifacts"  # the local store's run artifacts, in the state folder
CONTEXT_KEY = "imbsweep_trial"  # the config key through which the sweeper hands a job its trial

# -- MLflow: MLflow's own tags -------------------------------------------------------------
RUN_NAME = "mlflow.runName"  # a tag MLflow's log_batch turns into the run's name
NOTE = "mlflow.note.content"  # a run's description in the MLflow UI
PARENT_RUN = "mlflow.parentRunId"
USER, SOURCE_NAME, SOURCE_TYPE = "mlflow.user", "mlflow.source.name", "mlflow.source.type"
GIT_COMMIT = "mlflow.source.git.commit"
DATA_CONTEXT = "mlflow.data.context"  # on a dataset input: train / validation / test
SOURCE_DATASET = "imbsweep.data"  # in a generated dataset's code source: the dataset's name
#: the experiment tag the MLflow 3 UI reads to choose its view: without it, it may open an
#: experiment as GenAI (traces, token usage) instead of on its runs
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")

# -- MLflow: every run ---------------------------------------------------------------------
TAG_STUDY = "imbsweep.study"  # the study a run belongs to
TAG_TRIAL = "imbsweep.trial"  # a trial run's number (within its arm in a tournament)
TAG_ROLE = "imbsweep.role"  # ROLE_PARENT or ROLE_RESEED; a trial run has none
TAG_STATE = "imbsweep.state"  # one of STATES
TAG_TRICK = "imbsweep.trick"  # the trick label derived from the config (trick.trick_label)
TAG_ARM = "imbsweep.arm"  # a tournament's arm
TAG_CHOICE = "imbsweep.choice."  # + group: the option Hydra composed (what `imbsweep export` writes)
TAG_REASON = "imbsweep.failure_reason"  # why a run failed
TAG_PRUNE_REASON = "imbsweep.prune_reason"  # why a trial was pruned
TAG_DEVICE = "imbsweep.device"
TAG_GIT_DIRTY = "imbsweep.git_dirty"
TAG_DATA_DIGEST = "imbsweep.data.digest"  # the digest of the data a run trained on (a user's file: its bytes)
TAG_NOT_EVALUATED = "imbsweep.data.not_evaluated"  # classes a split holds no example of
TAG_OVERRIDES = "imbsweep.overrides"  # an app's trial: its job's overrides, space-separated (artifact overrides.yaml)

# -- MLflow: the parent run of a study -----------------------------------------------------
TAG_STUDY_DATA = "imbsweep.data"  # JSON: what the study trains on (its digest and columns)
TAG_BASELINE_ARM = "imbsweep.baseline_arm"  # the arm the others are tested against
TAG_POSTHOC_ARMS = "imbsweep.posthoc_arms"  # JSON {post-hoc arm: its source arm}
TAG_POSTHOC_KINDS = "imbsweep.posthoc_kinds"  # JSON {post-hoc arm: posthoc | taunorm}
TAG_BEST_TRIAL = "imbsweep.best_trial"  # "<arm> <number>", or "<number>" in a study without arms
TAG_CONCLUSION = "imbsweep.compare.conclusion"  # what the last `imbsweep compare` concluded
TAG_APP = "imbsweep.app"  # APP_OWN for imbsweep's training app, APP_OTHER for any other Hydra app
APP_OWN, APP_OTHER = "imbsweep", "hydra"
TAG_APP_NAME = "imbsweep.app_name"  # another app's job name (its script's or module's name)
TAG_OBJECTIVES = "imbsweep.objectives"  # JSON [[name, direction], ...]: what the trials return
TAG_SEED_KEY = "imbsweep.seed_key"  # the config key `compare --reseed` sets (absent: none)
COMMAND_FILE = "command.json"  # the parent run's artifact: {program, argv, cwd}, the app's command line

# -- MLflow: a reseed run (`imbsweep compare --reseed K`) ----------------------------------
TAG_RESEED_OF = "imbsweep.reseed_of"  # the run id of the trial it re-runs
TAG_RESEED_OF_TRIAL = "imbsweep.reseed_of_trial"  # that trial's number
TAG_REPLICATE = "imbsweep.replicate"  # k of seeds 1..K: the key of the pairing
TAG_VARY_SPLIT = "imbsweep.vary_split"  # "true" when data.seed varied with the seed too

# -- states and roles ----------------------------------------------------------------------
COMPLETE, PRUNED, FAILED, KILLED, RUNNING = "complete", "pruned", "failed", "killed", "running"
ROLE_PARENT, ROLE_RESEED, ROLE_TRIAL = "parent", "reseed", "trial"


def reseed_tags(study: str, arm: str, run_id: str, trial: int, replicate: int, vary_split: bool) -> dict[str, str]:
    """The tags of replicate ``replicate`` of ``arm``'s best trial (number ``trial``, run ``run_id``)."""
    return {TAG_STUDY: study, TAG_ROLE: ROLE_RESEED, TAG_RESEED_OF: run_id, TAG_RESEED_OF_TRIAL: str(trial),
            TAG_ARM: arm, TAG_REPLICATE: str(replicate), TAG_VARY_SPLIT: str(vary_split).lower()}


def reseed_name(arm: str, trial: int, replicate: int) -> str:
    """A reseed run's name, like a trial's: ``ce trial-3 seed-1``."""
    return f"{arm} trial-{trial} seed-{replicate}"


# -- metric keys ---------------------------------------------------------------------------
SELECTED = "selected"  # a curve's value at the selected epoch: val/balanced_acc -> val/selected/balanced_acc


def mlflow_name_ok(name: str) -> bool:
    """Whether MLflow takes ``name`` as a param's or metric's name: letters, digits, ``_ - . :``,
    space and ``/`` (not at its ends, not twice in a row, no ``.``/``..`` part), 250 at most."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.: /")
    return (0 < len(name) <= 250 and all(c in allowed or c.isalnum() for c in name) and not name.startswith("/")
            and not name.endswith("/") and "//" not in name and not any(p in (".", "..") for p in name.split("/")))


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


# -- Optuna: trial and study attributes ----------------------------------------------------
ATTR_RUN_ID = "mlflow_run_id"  # a trial's MLflow run
ATTR_FAIL_REASON = "fail_reason"  # why a trial failed (the official sweeper's name)
ATTR_TRICK = "imbsweep:trick"  # a trial's trick label
ATTR_HOST, ATTR_PID, ATTR_START = "imbsweep:host", "imbsweep:pid", "imbsweep:pid_start"  # the process running it
ATTR_BASELINE = "imbsweep:baseline"  # the study's (an arm's) first trial: the config's defaults
ATTR_REQUEUED = "imbsweep:requeued"  # a failed trial whose twin waits: it does not count
ATTR_REQUEUED_FROM = "imbsweep:requeued_from"  # on the twin: the number it replaces
ATTR_LOST = "imbsweep:lost_jobs"  # on the twin: how many launcher jobs its parameters lost (killed, timed out)
ATTR_OUTCOME = "imbsweep:outcome"  # how the trial's run ended, written with its last MLflow writes
OUTCOME_CUT = "cut"  # the outcome of a trial the platform cut (a store refused its writes): re-queued, uncounted
# on an arm's study
ATTR_ARM, ATTR_TOURNAMENT = "imbsweep:arm", "imbsweep:tournament"  # its arm and tournament
ATTR_ARM_VALUES = "imbsweep:arm_values"  # what the arm fixes or searches, as written
ATTR_METRIC = "imbsweep:metric"  # the objective's metric


def posthoc_attr(kind: str) -> str:
    """The attribute on a trial of a post-hoc arm's source with its objective after the post-hoc
    ``kind`` (``posthoc.POSTHOC_KINDS``): ``imbsweep:posthoc_value`` for post-hoc logit
    adjustment, ``imbsweep:taunorm_value`` for tau-normalisation."""
    return f"imbsweep:{kind}_value"

#: set in the processes a sweep starts (its workers), and their torch threads
WORKER_ENV, THREADS_ENV = "IMBSWEEP_WORKER", "IMBSWEEP_THREADS"
