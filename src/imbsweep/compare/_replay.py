"""``compare --reseed K`` on a study of any Hydra app: each arm's best trial run again with the
app's seed key set to 1..K, through the app's own command (the sweep's, recorded on its parent
run as ``command.json``) in the sweeper's replay mode (``sweep/_replay.py``), on ``--jobs``
processes. The runs are recorded as imbsweep's own re-runs are (``imbsweep.role=reseed``, the
trial they re-run, the arm, the replicate), so the comparison reads both alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..names import (
    COMMAND_FILE,
    ROLE_RESEED,
    TAG_REPLICATE,
    TAG_RESEED_OF,
    TAG_ROLE,
    TAG_STUDY,
    reseed_name,
    reseed_tags,
)
from ..results import StudyError, StudyRecord, best_runs, download_text
from ..sweep._userrun import hidden


def app_command(record: StudyRecord) -> dict[str, Any]:
    """The study's ``command.json``: ``{program, argv, cwd, config_dir}`` (read once per record)."""
    command = record.__dict__.get("_command")
    if command is None:
        text = download_text(record.client, str(record.parent_run_id), COMMAND_FILE) if record.parent_run_id else None
        command = record.__dict__["_command"] = json.loads(text) if text else {}
    if not command.get("program"):
        raise StudyError(f"study {record.name!r}: its sweep did not run from a command line that can be run again "
                         "(it ran inside another program), so its trials cannot be re-run; run the sweep from the "
                         "command line (python app.py -m …)")
    return dict(command)


def _key(override: str) -> str:
    return override.lstrip("+~").partition("=")[0]


def replay_jobs(record: StudyRecord, k: int, state: str | os.PathLike[str], top: int | None = None,
                baseline: str | None = None) -> list[dict[str, Any]]:
    """The re-runs still missing for seeds 1..k of each arm's best trial (of the ``top`` best
    arms and the baseline, when ``top`` is given), as the sweeper's replay jobs."""
    import yaml

    from .._stores import redact
    from ._table import replicate_runs

    seed_key = record.seed_key
    if seed_key is None:
        raise StudyError(f"study {record.name!r}: its app names no seed key, so its trials cannot be re-seeded; run "
                         "the sweep's command again with hydra.sweeper.seed_key=<the config key that seeds a run> "
                         "(it resumes the finished study and records the key), then compare --reseed")
    metric, direction = record.selection(None)
    best = best_runs(record, metric, direction)
    if top is not None:
        best = best[(best["arm"] == baseline) | (best["arm"].isin(list(best["arm"][:top])))]
    best = best.assign(_posthoc=best["arm"].isin(list(record.posthoc_arms))).sort_values("_posthoc", kind="stable")
    uri = record.uri if redact(record.uri) == record.uri else None  # credentials travel in the environment only
    jobs = []
    for _, b in best.drop_duplicates("run_id").iterrows():
        run_id, arm, trial = str(b["run_id"]), str(b["arm"]), int(b["trial"])
        have = {int(s) for s in replicate_runs(record, run_id, False)["replicate"]}
        missing = [s for s in range(1, k + 1) if s not in have]
        if not missing:
            continue
        text = download_text(record.client, run_id, "overrides.yaml")
        if text is None:
            raise StudyError(f"run {run_id} (arm {arm}, trial {trial}) has no overrides.yaml artifact: it cannot be "
                             "re-run")
        overrides = [str(o) for o in yaml.safe_load(text) or []]
        kept = [o for o in overrides if not hidden(o)]
        if len(kept) < len(overrides):
            print(f"imbsweep: reseed: arm {arm}'s best trial had credentials on its command line, which the record "
                  f"does not keep ({', '.join(o for o in overrides if hidden(o))}); it is re-run without them: "
                  "give them to the app through the environment (${oc.env:…} in its config)", file=sys.stderr)
        overrides = kept
        # the seed key as the trial set it: added (+seed=…) where the app's config lacks it
        plus = next((o[:len(o) - len(o.lstrip("+"))] for o in overrides if _key(o) == seed_key), "")
        for seed in missing:
            tags = reseed_tags(record.name, arm, run_id, trial, seed, vary_split=False)
            ctx = {"study": record.name, "experiment_id": record.experiment_id, "parent_run_id": record.parent_run_id,
                   "state": str(Path(state).expanduser().resolve()), "objectives": [list(o) for o in record.objectives],
                   "arm": arm, "run_name": reseed_name(arm, trial, seed), "tags": tags,
                   **({"tracking_uri": uri} if uri else {})}
            jobs.append({"overrides": [*(o for o in overrides if _key(o) != seed_key), f"{plus}{seed_key}={seed}"],
                         "ctx": ctx})
    return jobs


def reseed_app(record: StudyRecord, k: int, jobs: int, state: str | os.PathLike[str], top: int | None = None,
               baseline: str | None = None, vary_split: bool = False) -> int:
    """Run the missing re-runs on ``jobs`` processes of the app's command, with a progress bar;
    return how many ran. Each process writes its jobs' folders under a sweep folder of the
    re-runs' own (``multirun/reseed/<study>-<time>/r<i>_<n>`` in the app's launch folder), never
    over the sweep's. Failures (a FAILED run, a process that died, a run it left RUNNING, which is
    ended FAILED) are reported and kept, not raised."""
    import threading

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..sweep._procs import GPU_ENV, gpu_slots, visible_gpus
    from ..sweep._replay import DONE, REPLAY_ENV
    from ..sweep._space import override

    if vary_split:
        raise StudyError(f"--vary-split: study {record.name!r} is of another app than imbsweep's; its split is its "
                         "own (vary it with its seed key, or in the app)")
    todo = replay_jobs(record, k, state, top, baseline)
    if not todo:
        which = "every arm's" if top is None else f"the {top} best arms' and {baseline}'s"
        print(f"reseed: {which} best trial already has seeds 1..{k}", file=sys.stderr)
        return 0
    command = app_command(record)
    per_process = ("hydra.sweeper.n_jobs=", "hydra.sweep.dir=", "hydra.sweep.subdir=")
    argv = [a for a in command["argv"] if not a.lstrip("+").startswith(per_process) and not hidden(a)]
    cwd = Path(command.get("cwd") or ".")
    folder = cwd / "multirun" / "reseed" / f"{record.name.replace('/', '_')}-{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    env = {**os.environ}
    if "tracking_uri" not in todo[0]["ctx"]:
        env["MLFLOW_TRACKING_URI"] = record.uri
    shares = [todo[i::jobs] for i in range(min(jobs, len(todo)))]
    slots = gpu_slots(len(shares), visible_gpus())  # each process its GPU, as the sweeper's workers
    started = int(time.time() * 1000)
    columns = (TextColumn("reseed {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    done: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, \
            Progress(*columns, transient=False, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"{len({j['ctx']['arm'] for j in todo})} arms x seeds 1..{k}", total=len(todo))
        procs = []
        for i, share in enumerate(shares):
            path = Path(tmp, f"replay{i}.json")
            path.write_text(json.dumps({"jobs": share}))
            procs.append(subprocess.Popen(
                [*command["program"], *argv, "hydra.sweeper.n_jobs=1", override("hydra.sweep.dir", str(folder)),
                 f"hydra.sweep.subdir=r{i}_${{hydra.job.num}}"],
                cwd=cwd, env={**env, REPLAY_ENV: str(path), **({} if slots[i] is None else {GPU_ENV: str(slots[i])})},
                stdout=subprocess.PIPE, text=True))

        def read(p: subprocess.Popen[str]) -> None:  # every process's output at once: a full pipe would stall it
            assert p.stdout is not None
            for line in p.stdout:
                if line.startswith(DONE):
                    done.append(line.split()[-1])
                    bar.advance(task)

        readers = [threading.Thread(target=read, args=(p,), daemon=True) for p in procs]
        for t in readers:
            t.start()
        for p, t in zip(procs, readers, strict=True):
            t.join()
            if p.wait() != 0:
                print(f"imbsweep: reseed: the app's command exited with {p.returncode}: "
                      f"{' '.join(command['program'])} (in {cwd})", file=sys.stderr)
    _end_left_running(record, todo, started)
    failed = len(todo) - done.count("complete")
    if failed:
        print(f"imbsweep: reseed failed: {failed} of {len(todo)} re-runs (their MLflow runs are FAILED, with the "
              "reason, or never started: see the lines above)", file=sys.stderr)
    return len(todo)


def _end_left_running(record: StudyRecord, todo: list[dict[str, Any]], since: int) -> None:
    """This command's re-runs that a killed process left RUNNING end FAILED (nothing else would
    end them); another command's, running beside it, are not touched."""
    from ..tracking import end_failed

    mine = {(j["ctx"]["tags"][TAG_RESEED_OF], j["ctx"]["tags"][TAG_REPLICATE]) for j in todo}
    study = record.name.replace("\\", "\\\\").replace("'", "\\'")
    query = f"tags.`{TAG_STUDY}` = '{study}' and tags.`{TAG_ROLE}` = '{ROLE_RESEED}' and attributes.status = 'RUNNING'"
    for run in record.client.search_runs([record.experiment_id], query, max_results=1000):
        tags = run.data.tags
        if (tags.get(TAG_RESEED_OF), tags.get(TAG_REPLICATE)) in mine and run.info.start_time >= since:
            end_failed(record.client, run.info.run_id, "its process ended before the run did", run.info.run_name)
