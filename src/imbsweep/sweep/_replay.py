"""The sweeper's replay mode: run given jobs of an app, each recorded as a child run of a
study's parent run, through the app's own command and Hydra's launcher, without a search.

``imbsweep compare --reseed K`` on a study of any app (``compare/_replay.py``) runs the app's
command once per worker with ``$IMBSWEEP_REPLAY`` naming a JSON file
``{"jobs": [{"overrides": [...], "ctx": {...}}, ...]}``; the sweeper then launches each job
with its ``hydra.sweeper.trial`` context (``replay: true``: a re-run, no Optuna trial) and
prints one line per job that ended (``imbsweep-replay: <i> <state>``), which compare counts."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

log = logging.getLogger(__name__)
REPLAY_ENV = "IMBSWEEP_REPLAY"
DONE = "imbsweep-replay:"  # the prefix of the line each job prints when it ends


def replay_file() -> str | None:
    """The jobs file this process was started to replay, None for a sweep."""
    return os.environ.get(REPLAY_ENV) or None


def replay(path: str, launcher: Any) -> int:
    """Launch every job of ``path`` in turn; returns how many failed (each is a FAILED run)."""
    from hydra.core.utils import JobStatus

    from ._usertask import job_value, trial_override

    with open(path) as f:
        jobs = json.load(f)["jobs"]
    failed = 0
    for i, job in enumerate(jobs):
        overrides = [*job["overrides"], trial_override({**job["ctx"], "replay": True})]
        (ret,) = launcher.launch([overrides], initial_job_idx=i)
        ok = ret.status == JobStatus.COMPLETED
        if not ok:
            failed += 1
            value = job_value(ret)
            log.warning("re-run %d (%s) failed: %s: %s", i, job["ctx"].get("run_name"), type(value).__name__, value)
        print(f"{DONE} {i} {'complete' if ok else 'failed'}", flush=True)
    return failed
