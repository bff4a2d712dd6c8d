"""``compare --reseed K``: paired seed replicates of every arm's best configuration, on a
process pool.

Replicate k (1..K) of every arm runs with ``trainer.seed = k`` (and ``data.seed = k`` with
``--vary-split``), so the k-th replicates of two arms share their seed and are paired. Each
is a child run of the study's parent run tagged ``imbsweep.role=reseed``,
``imbsweep.reseed_of=<the best trial's run id>``, ``imbsweep.arm`` and
``imbsweep.replicate=<k>``; seeds a previous ``--reseed`` completed are skipped.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from ..errors import ImbsweepError
from ..names import (
    reseed_name,
    reseed_tags,
)
from ..results import StudyRecord, best_runs, choices_of, download_text


@dataclass
class ReseedJob:
    arm: str
    run_id: str
    trial: int
    seed: int  # the replicate index k: trainer.seed (and data.seed with vary_split)
    config_yaml: str
    choices: dict[str, str]
    uri: str
    state: str
    experiment_id: str
    parent_run_id: str | None
    study: str
    threads: int | None
    vary_split: bool = False
    seed_key: str = "trainer.seed"  # the sweep's hydra.sweeper.seed_key


def reseed_jobs(record: StudyRecord, metric: str, direction: str, k: int, state: str | os.PathLike[str],
                threads: int | None, top: int | None = None, baseline: str | None = None,
                vary_split: bool = False) -> list[ReseedJob]:
    """The runs still missing for seeds 1..k of each arm's best trial (of the ``top`` best arms
    by validation and the baseline, when ``top`` is given), minus those a previous
    ``--reseed`` of the same kind (``vary_split`` or not) already completed."""
    from ._table import replicate_runs

    best = best_runs(record, metric, direction)
    if top is not None:
        best = best[(best["arm"] == baseline) | (best["arm"].isin(list(best["arm"][:top])))]
    jobs = []
    # a post-hoc arm may share its source's best run: one set of replicates, tagged with the source
    best = best.assign(_posthoc=best["arm"].isin(list(record.posthoc_arms))).sort_values("_posthoc", kind="stable")
    for _, b in best.drop_duplicates("run_id").iterrows():
        have = {int(s) for s in replicate_runs(record, str(b["run_id"]), vary_split)["replicate"]}
        missing = [s for s in range(1, k + 1) if s not in have]
        if not missing:
            continue
        text = download_text(record.client, str(b["run_id"]), "config.yaml")
        if text is None:
            raise ImbsweepError(f"run {b['run_id']} (arm {b['arm']}, trial {b['trial']}) has no config.yaml "
                                "artifact (tracking.artifacts=false?): it cannot be re-run")
        choices = choices_of(b)
        for seed in missing:
            jobs.append(ReseedJob(str(b["arm"]), str(b["run_id"]), int(b["trial"]), seed, text, choices,
                                  record.uri, str(state), record.experiment_id, record.parent_run_id,
                                  record.name, threads, vary_split, record.seed_key or "trainer.seed"))
    return jobs


def run_reseed(job: ReseedJob) -> tuple[str, int, str, str | None]:
    """One replicate (in a worker process): the trial's config with the replicate's seed,
    recorded as a child run of the study's parent run. Returns (arm, seed, state, reason)."""
    import logging

    from omegaconf import DictConfig, OmegaConf

    from ..tracking import MlflowRun
    from ..training import fit, prepare

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    cfg = OmegaConf.create(job.config_yaml)
    assert isinstance(cfg, DictConfig)
    OmegaConf.update(cfg, job.seed_key, job.seed, merge=False)
    if job.vary_split:
        cfg.data.seed = job.seed
    cfg.state_dir = job.state
    # the store compare reads, not the (redacted) one in the artifact; the local store stays implicit
    from .._paths import local_tracking_uri, state_dir

    cfg.tracking.uri = None if job.uri == local_tracking_uri(state_dir(job.state)) else job.uri
    if job.threads and cfg.trainer.get("num_threads") is None:
        cfg.trainer.num_threads = job.threads
    setup = prepare(cfg)
    tags = reseed_tags(job.study, job.arm, job.run_id, job.trial, job.seed, job.vary_split)
    with MlflowRun(cfg, experiment_id=job.experiment_id, parent_run_id=job.parent_run_id, tags=tags,
                   run_name=reseed_name(job.arm, job.trial, job.seed), choices=job.choices) as rec:
        result = fit(cfg, rec, setup)
    return job.arm, job.seed, result.state, result.reason


def _pin_worker(counter: Any, slots: list[str | None]) -> None:
    """A re-run process's GPU: the next of ``slots`` (the pool starts its processes in turn)."""
    from ..sweep._procs import pin_gpu

    with counter.get_lock():
        k = counter.value
        counter.value += 1
    pin_gpu(slots[k % len(slots)])


def reseed(record: StudyRecord, metric: str | None, k: int, jobs: int, state: str | os.PathLike[str],
           top: int | None = None, baseline: str | None = None, vary_split: bool = False) -> int:
    """Run the missing replicates on ``jobs`` worker processes with a progress bar; return
    how many ran. Failures are reported and kept (FAILED runs), not raised."""
    import multiprocessing as mp

    from omegaconf import OmegaConf
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..sweep._procs import gpu_slots, torch_threads, visible_gpus

    if not record.own_app:  # another app's study: its own command re-runs its trials
        from ._replay import reseed_app

        return reseed_app(record, k, jobs, state, top, baseline, vary_split)
    metric, direction = record.metric_direction(metric)
    threads = torch_threads(jobs, OmegaConf.create({}))  # split torch threads as the sweeper does
    todo = reseed_jobs(record, metric, direction, k, state, threads, top, baseline, vary_split)
    if not todo:
        which = "every arm's" if top is None else f"the {top} best arms' and {baseline}'s"
        print(f"reseed: {which} best trial already has seeds 1..{k}", file=sys.stderr)
        return 0
    failed = []
    columns = (TextColumn("reseed {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    ctx = mp.get_context("spawn")
    slots = gpu_slots(jobs, visible_gpus())  # each process its GPU, round-robin, as the sweeper's workers
    with Progress(*columns, transient=False, console=Console(stderr=True)) as bar, \
            ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_pin_worker,
                                initargs=(ctx.Value("i", 0), slots)) as pool:
        task = bar.add_task(f"{len({j.arm for j in todo})} arms x seeds 1..{k}", total=len(todo))
        futures = [pool.submit(run_reseed, j) for j in todo]
        for f in as_completed(futures):
            try:
                arm, seed, state_, reason = f.result()
            except ImbsweepError as exc:
                failed.append(str(exc))
            else:
                if state_ != "complete":
                    failed.append(f"{arm} seed {seed}: {reason}")
            bar.advance(task)
    for line in failed:
        print(f"imbsweep: reseed failed: {line}", file=sys.stderr)
    return len(todo)
