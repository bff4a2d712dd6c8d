"""Hydra's own launcher against a home-made one, on default tournament trials.

A sweep of imbsweep's app runs its jobs through ``CachedJobs`` (``sweep/_jobs.py``, ``_jobtext.py``,
``_joblog.py``: ~680 lines on Hydra's private internals), which composes each job from a cached base
instead of calling Hydra's ``BasicLauncher.launch``. This measures what that saves where it
matters: the default tournament's trials (sweeps/tricks.yaml: cnn1d on MNIST-1D-LT, 40 epochs,
Hyperband), 2 workers by default, side by side in one run:

A. the code in ``--before`` (a checkout with ``CachedJobs``, e.g. 9cb626d) as it is;
B. the same code with a no-op Hydra callback (``hydra.experimental.callback.Callback``), with
   which it hands every job to Hydra's ``BasicLauncher.launch`` instead (unchanged otherwise);
C. (``--after``) the installed imbsweep.

Each repetition runs the variants in turn (the order rotates, so that a slow spell of this
shared machine does not land on one variant) on a fresh state folder. Reported per variant: the
wall time of the command and of its trial loop (first trial's start to last trial's end, Optuna's
timestamps) and the CPU time of the sweep and its workers (user + system, ``getrusage`` of the
children), then the median over repetitions of (B − A) / B: the share of the sweep's time the
home-made launcher saved. ``--n-jobs 1 --pruner none`` makes every variant train exactly the
same trials (with 2 workers, which finishes first changes what the samplers and pruners see).

    .venv/bin/python bench/launcher_jobs.py --before /tmp/before/src [--after] [--repeats 3] \
        [--trials-per-arm 4] [--n-jobs 2] [--pruner none]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # bench/ is scripts, not a package
from _sweeps import loop_seconds, study, sweep  # noqa: E402

ARMS = ("ce", "focal", "logit_adjusted")  # of tricks.yaml's 13: three that train alike
DROPPED = ("ce_drw", "class_balanced", "ldam_drw", "balanced_softmax", "ce_resampling", "ce_maxnorm", "ce_crt",
           "ce_lws", "ce_mixup", "ce_remix")
NOOP_CALLBACK = "+hydra.callbacks.noop._target_=hydra.experimental.callback.Callback"


def overrides(name: str, per_arm: int, n_jobs: int = 2, pruner: str | None = None) -> list[str]:
    return ["tricks", f"hydra.sweeper.study_name={name}", f"hydra.sweeper.trials_per_arm={per_arm}",
            f"hydra.sweeper.n_jobs={n_jobs}", *(f"~hydra.sweeper.arms.{a}" for a in DROPPED),
            "~hydra.sweeper.posthoc_arms.ce_posthoc", "~hydra.sweeper.posthoc_arms.ce_taunorm",
            *([f"hydra.sweeper.pruner={{name:{pruner}}}"] if pruner else [])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", metavar="SRC", required=True,
                    help="the src/ folder of a checkout of a commit with CachedJobs (e.g. 9cb626d)")
    ap.add_argument("--after", action="store_true", help="also run the installed imbsweep (C)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--trials-per-arm", type=int, default=4)
    ap.add_argument("--n-jobs", type=int, default=2, help="workers (1: every variant trains exactly the same trials)")
    ap.add_argument("--pruner", default=None, help="another pruner (none: every trial trains its 40 epochs)")
    ap.add_argument("extra", nargs="*", help="more overrides for every variant (model=logreg trainer.epochs=3: "
                    "short trials, where a job's cost shows)")
    args = ap.parse_args()
    variants = {"A cached": (args.before, []), "B hydra launcher": (args.before, [NOOP_CALLBACK])}
    if args.after:
        variants["C after"] = (None, [])
    n = args.trials_per_arm * len(ARMS)
    walls: dict[str, list[float]] = {v: [] for v in variants}
    loops: dict[str, list[float]] = {v: [] for v in variants}
    cpus: dict[str, list[float]] = {v: [] for v in variants}
    periods: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.repeats):
        names = list(variants)
        names = names[r % len(names):] + names[:r % len(names)]
        for v in names:
            src, extra = variants[v]
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                wall = sweep(work, *overrides("bench", args.trials_per_arm, args.n_jobs, args.pruner), *args.extra,
                             *extra, src=src)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                loop = sum(loop_seconds(study(work, f"bench/{a}")) for a in ARMS) / len(ARMS)
                # one worker: a trial's start to the next one's, whatever the arm (its job, records, next ask)
                starts = sorted(t.datetime_start for a in ARMS for t in study(work, f"bench/{a}").trials
                                if t.datetime_start)
                gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
                periods[v].append(statistics.median(gaps))
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            walls[v].append(wall)
            loops[v].append(loop)
            cpus[v].append(cpu)
            print(f"repeat {r + 1} {v:17s} wall {wall:6.1f} s  trial loop {loop:6.1f} s  CPU {cpu:6.1f} s  "
                  f"({n} trials)", flush=True)
    print()
    for v in variants:
        print(f"{v:17s} wall median {statistics.median(walls[v]):6.1f} s, trial loop median "
              f"{statistics.median(loops[v]):6.1f} s, CPU median {statistics.median(cpus[v]):6.1f} s, "
              f"{statistics.median(walls[v]) / n:.2f} s a trial, trial period median "
              f"{statistics.median(periods[v]) * 1000:.0f} ms (each repetition: "
              f"{', '.join(f'{x * 1000:.0f}' for x in periods[v])})")
    saved_cpu = [(b - a) / b for a, b in zip(cpus["A cached"], cpus["B hydra launcher"], strict=True)]
    print(f"(B - A) / B of the CPU time: median {statistics.median(saved_cpu):+.1%} "
          f"(each repetition: {', '.join(f'{s:+.1%}' for s in saved_cpu)})")
    saved = [(b - a) / b for a, b in zip(walls["A cached"], walls["B hydra launcher"], strict=True)]
    print(f"(B - A) / B, the share of the sweep's wall time CachedJobs saved: median {statistics.median(saved):+.1%} "
          f"(each repetition: {', '.join(f'{s:+.1%}' for s in saved)})")


if __name__ == "__main__":
    main()
