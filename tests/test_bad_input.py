"""Bad input on every surface (single run, sweep file, command-line search space, compare,
export, ui, dashboard), as a matrix: each case exits with code 2 and prints exactly one line,
``imbsweep: error: …``, that names the key, option or URI and the value; no traceback; and the
stores are as they were: no trial or run RUNNING, no run, study or experiment created, and
the finished studies already there (a plain study and a tournament, swept for real by the
module's fixture) untouched, down to every trial's state, params, values and attributes and
every run's status, end time, tags and metrics.

The CLI runs in-process (``imbsweep.cli.main``), so the matrix costs what the checks cost;
``os.execv`` is replaced by a function that fails the case, so that a server command whose
checks let bad input through fails the test instead of replacing pytest. The few checks
that need a process of their own (the exit code of the installed command, a real
optuna-dashboard on PostgreSQL) run in a subprocess at the end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest

from imbsweep.cli import main
from tests.helpers.cli import CLI, cli_env
from tests.helpers.configs import TINY
from tests.helpers.mounts import tmpfs
from tests.helpers.procs import free_port, start_server, stop_server, wait_for_http
from tests.helpers.stores import journal_storage, journal_study, mlflow_client

JOURNALS = ("mlruns/optuna/journal.log", "other.log")  # every Optuna journal a case could write
RUN = ["run", *TINY, "tracking.experiment=bad"]  # if a case got through, its run would land in "bad"
SWEEP = ["sweep", "smoke", "trainer.epochs=1", "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=fresh"]
RESUME = ["sweep", "smoke", "trainer.epochs=1", "hydra.sweeper.n_trials=3", "hydra.sweeper.study_name=base"]
ARMS = ["sweep", "smoke_arms", "trainer.epochs=1", "hydra.sweeper.trials_per_arm=2", "hydra.sweeper.study_name=arms"]
FILE = ["hydra.searchpath=[file://{sweeps}]"]  # with `sweep NAME`: a file of this module's sweeps/ folder
UNREACHABLE = "http://127.0.0.1:{closed}"
NO_DIR = "/proc/imbsweep-test/x"  # a folder nobody can create, root included

#: the sweep files of the "sweep file" cases: a tiny study (digits, an MLP, 1 epoch) plus one mistake each
BASE_FILE = """# @package _global_
defaults:
  - override /hydra/sweeper: imbsweep_optuna
  - override /data: digits_lt
  - override /model: mlp
model: {{hidden_sizes: [32]}}
trainer: {{epochs: 1, batch_size: 64}}
{top}
hydra:
  mode: MULTIRUN
  sweeper:
    study_name: {name}
{sweeper}
"""
SWEEP_FILES = {
    "f_unknown_key": "    params: {optimizer.lr: 'tag(log, interval(1e-3, 1e-1))', optimizer.nosuch: 'choice(1, 2)'}",
    "f_unknown_option": "    params: {loss: 'choice(ce, focal, hinge)'}",
    "f_log_choice": "    params: {optimizer.lr: 'tag(log, choice(0.001, 0.01))'}",
    "f_unknown_tag": "    params: {optimizer.lr: 'tag(lg, interval(0.001, 0.1))'}",
    "f_empty_interval": "    params: {optimizer.lr: 'interval(0.1, 0.01)'}",
    "f_heartbeat": "    heartbeat_interval: -5\n    params: {optimizer.lr: 'interval(0.001, 0.1)'}",
    "f_seed": "    sampler: {seed: abc}\n    params: {optimizer.lr: 'interval(0.001, 0.1)'}",
    "f_baseline_outside": ("    params: {optimizer.lr: 'tag(log, interval(1e-3, 1e-1))'}\n"
                           "    baseline: {optimizer.lr: 0.5}"),
    "f_baseline_unsearched": ("    params: {optimizer.lr: 'interval(0.001, 0.1)'}\n"
                              "    baseline: {optimizer.weight_decay: 0.1}"),
    "f_conditional_key": ("    params: {loss: 'choice(ce, focal)'}\n"
                          "    conditional: {loss.gamma: {when: {loss: focal}, space: 'interval(0.5, 3.0)'},\n"
                          "                  optimizer.nosuch: {when: {loss.nope: 1}, space: 'interval(0, 1)'}}"),
    "f_batch": "    params: {trainer.batch_size: 'choice(64, 5000)'}",
    "f_yaml": "    params: {optimizer.lr: [1,\n",
    "f_storage": "    storage: /proc/imbsweep-test/journal.log\n    params: {optimizer.lr: 'interval(0.001, 0.1)'}",
    "f_objective": "    params: {optimizer.lr: 'interval(0.001, 0.1)'}",
    "f_arm_option": ("    trials_per_arm: 1\n"
                     "    arms: {ce: {loss: ce}, resampled: {loss: ce, resampling: 'choice(sqrt, nope)'}}\n"
                     "    params: {optimizer.lr: 'interval(0.001, 0.1)'}"),
    "f_arm_key": ("    trials_per_arm: 1\n"
                  "    arms: {ce: {loss: ce}, drw: {loss: ce, loss.nosuch: 'interval(0.5, 0.9)'}}\n"
                  "    params: {optimizer.lr: 'interval(0.001, 0.1)'}"),
}
TOP_LEVEL = {"f_objective": "objective: {metric: val/nosuch, direction: maximize}"}


def _cases() -> list[Any]:
    """(id, argv, what the line must name, extra environment), one per surface and mistake."""
    c: list[tuple[str, list[str], list[str], dict[str, str]]] = []

    def add(name: str, argv: list[str], *names: str, env: dict[str, str] | None = None) -> None:
        # a study of its own per case: one case's leftovers (if any) could not hide another's
        argv = [a.replace("study_name=fresh", f"study_name={name}") for a in argv]
        c.append((name, argv, list(names), env or {}))

    # -- a single run -------------------------------------------------------------------------
    add("run-lr-inf", [*RUN, "optimizer.lr=inf"], "optimizer.lr=inf", "finite")
    add("run-lr-nan", [*RUN, "optimizer.lr=nan"], "optimizer.lr=nan")
    add("run-lr-negative", [*RUN, "optimizer.lr=-1"], "optimizer.lr=-1")
    add("run-lr-text", [*RUN, "optimizer.lr=fast"], "optimizer.lr='fast'")
    add("run-weight-decay-inf", [*RUN, "optimizer.weight_decay=inf"], "optimizer.weight_decay=inf")
    add("run-ratio-inf", [*RUN, "data.imbalance_ratio=inf"], "data.imbalance_ratio=inf", "finite")
    add("run-ratio-below-1", [*RUN, "data.imbalance_ratio=0.5"], "data.imbalance_ratio=0.5")
    add("run-ratio-inf-table", ["run", "data=tabular", "data.path=good.csv", "data.target=y", "trainer.epochs=1",
                                "data.imbalance_ratio=inf"], "data.imbalance_ratio=inf")
    add("run-ratio-inf-images", ["run", "data=image_folder", "data.path=nowhere", "data.imbalance_ratio=inf"],
        "data.imbalance_ratio=inf")
    add("run-batch-above-train", [*RUN, "trainer.batch_size=100000"], "trainer.batch_size=100000", "training split")
    add("run-batch-zero", [*RUN, "trainer.batch_size=0"], "trainer.batch_size=0")
    add("run-epochs-zero", [*RUN, "trainer.epochs=0"], "trainer.epochs=0")
    add("run-seed-text", [*RUN, "trainer.seed=abc"], "trainer.seed='abc'")
    add("run-device", [*RUN, "trainer.device=tpu"], "trainer.device='tpu'")
    add("run-cfg-choice", ["run", "--cfg", "jobb"], "--cfg", "invalid choice: 'jobb'")
    add("run-key-typo", [*RUN, "trainer.epoch=3"], "trainer.epoch=3", "did you mean trainer.epochs?")
    add("run-group-typo", [*RUN, "lss=focal"], "lss=focal", "did you mean loss?")
    add("run-path-missing", ["run", "data=tabular"], "data.path", "must be set")
    add("sweep-key-typo", ["sweep", "smoke", "hydra.sweeper.study_name=fresh", "trainer.bach_size=8"],
        "trainer.bach_size=8", "did you mean trainer.batch_size?")
    add("run-channels-last-digits", [*RUN, "trainer.channels_last=true"], "trainer.channels_last=True", "image data")
    add("run-server-unreachable", [*RUN, f"tracking.uri={UNREACHABLE}", "tracking.connect_timeout_s=0.5"],
        "tracking.uri='http://127.0.0.1:{closed}'", "no MLflow tracking server answers")
    add("run-server-from-env", [*RUN, "tracking.connect_timeout_s=0.5"], "tracking.uri='http://127.0.0.1:{closed}'",
        env={"MLFLOW_TRACKING_URI": UNREACHABLE})
    add("run-uri-garbage", [*RUN, "tracking.uri=garbage"], "tracking.uri='garbage'", "file store")
    add("run-uri-scheme", [*RUN, "tracking.uri=ftp://host/x"], "tracking.uri='ftp://host/x'", "no ftp:// store")
    add("run-uri-driver", [*RUN, "tracking.uri=mysql://u@127.0.0.1/x"], "tracking.uri='mysql://u@127.0.0.1/x'",
        "driver is not installed")
    add("run-uri-database-missing", [*RUN, "tracking.uri=postgresql://postgres@127.0.0.1:5432/imbsweep_none"],
        "tracking.uri='postgresql://postgres@127.0.0.1:5432/imbsweep_none'", "\"imbsweep_none\" does not exist")
    add("run-uri-database-down", [*RUN, "tracking.uri=postgresql://u:secret@127.0.0.1:{closed}/x",
                                  "tracking.connect_timeout_s=0.5"],
        "tracking.uri='postgresql://u:***@127.0.0.1:{closed}/x'", "no database server answers")
    add("run-uri-sqlite-folder", [*RUN, f"tracking.uri=sqlite:///{NO_DIR}/m.db"], "tracking.uri=", "cannot create")
    add("run-experiment-empty", [*RUN, "tracking.experiment=''"], "tracking.experiment=''")
    add("run-experiment-deleted", [*RUN, "tracking.experiment=gone"], "tracking.experiment='gone'", "deleted")
    add("run-connect-timeout", [*RUN, "tracking.connect_timeout_s=0"], "tracking.connect_timeout_s=0")
    add("run-state-dir-file", [*RUN, "state_dir=afile"], "state_dir='afile'", "is a file")
    add("run-state-dir-under-file", [*RUN, "state_dir=afile/sub"], "state_dir='afile/sub'", "is a file")
    add("run-state-dir-unwritable", [*RUN, f"state_dir={NO_DIR}"], f"state_dir='{NO_DIR}'", "cannot create")
    table = ["run", "data=tabular", "data.target=y", "trainer.epochs=1"]
    add("run-csv-empty", [*table, "data.path=empty.csv"], "data.path='empty.csv'", "cannot be read")
    add("run-csv-binary", [*table, "data.path=binary.csv"], "data.path='binary.csv'", "cannot be read")
    add("run-csv-folder", [*table, "data.path=adir"], "data.path='adir'", "is a folder")
    add("run-csv-missing", [*table, "data.path=missing.csv"], "data.path='missing.csv'", "no such file")
    add("run-objective-unknown", [*RUN, "objective.metric=val/nosuch"], "objective.metric='val/nosuch'",
        "val/balanced_acc")
    add("run-objective-test", [*RUN, "objective.metric=test/acc"], "objective.metric='test/acc'")
    add("run-direction", [*RUN, "objective.direction=up"], "objective.direction='up'")
    add("run-unknown-option", [*RUN, "loss=hinge"], "loss=hinge", "no such option")
    add("run-unknown-key", [*RUN, "optimizer.nosuch=1"], "optimizer.nosuch")

    # -- a sweep file ---------------------------------------------------------------------------
    def sweep_file(name: str) -> list[str]:
        return ["sweep", name, *FILE]

    add("file-unknown-key", sweep_file("f_unknown_key"), "optimizer.nosuch='choice(1, 2)'", "not a key")
    add("file-unknown-option", sweep_file("f_unknown_option"), "loss='choice(ce, focal, hinge)'", "hinge")
    add("file-log-choice", sweep_file("f_log_choice"), "hydra.sweeper.params.optimizer.lr", "tag(log")
    add("file-unknown-tag", sweep_file("f_unknown_tag"), "hydra.sweeper.params.optimizer.lr", "unknown tag lg")
    add("file-empty-interval", sweep_file("f_empty_interval"), "hydra.sweeper.params.optimizer.lr", "low < high")
    add("file-heartbeat", sweep_file("f_heartbeat"), "hydra.sweeper.heartbeat_interval=-5")
    add("file-yaml-syntax", sweep_file("f_yaml"), "f_yaml.yaml, line", "not valid YAML")
    add("file-seed", sweep_file("f_seed"), "hydra.sweeper.sampler.seed", "abc", "Integer")
    add("file-baseline-outside", sweep_file("f_baseline_outside"), "hydra.sweeper.baseline.optimizer.lr=0.5",
        "outside")
    add("file-baseline-unsearched", sweep_file("f_baseline_unsearched"),
        "hydra.sweeper.baseline.optimizer.weight_decay=0.1", "not a searched parameter")
    add("file-conditional-when", sweep_file("f_conditional_key"), "hydra.sweeper.conditional.optimizer.nosuch",
        "loss.nope")
    add("file-batch-above-train", sweep_file("f_batch"), "trainer.batch_size='choice(64, 5000)'", "5000")
    add("file-storage-unwritable", sweep_file("f_storage"), "hydra.sweeper.storage='/proc/imbsweep-test/journal.log'")
    add("file-objective-unknown", sweep_file("f_objective"), "objective.metric='val/nosuch'")
    add("file-arm-option", sweep_file("f_arm_option"), "resampling='choice(sqrt, nope)'", "arm resampled")
    add("file-arm-key", sweep_file("f_arm_key"), "hydra.sweeper.arms.drw", "loss.nosuch")

    # -- a search space on the command line -------------------------------------------------------
    add("cli-unknown-key", [*SWEEP, "optimizer.nosuch=choice(1,2)"], "optimizer.nosuch='choice(1, 2)'",
        "not a key")
    add("cli-unknown-key-top", [*SWEEP, "nosuch=choice(1,2)"], "nosuch='choice(1, 2)'", "not a key")
    add("cli-unknown-key-two-workers", [*SWEEP, "optimizer.nosuch=choice(1,2)", "hydra.sweeper.n_jobs=2"],
        "optimizer.nosuch='choice(1, 2)'")
    add("cli-unknown-option", [*SWEEP, "loss=choice(ce,hinge)"], "loss='choice(ce, hinge)'", "hinge")
    add("cli-group-interval", [*SWEEP, "loss=interval(0,1)"], "loss='interval(0, 1)'", "config group")
    add("cli-arm-long", [*ARMS, "++hydra.sweeper.arms." + "a" * 120 + "={loss:ce}"], "at most 100")
    add("cli-arm-unknown-option", [*ARMS, "++hydra.sweeper.arms.bad={loss:ce,resampling:'choice(sqrt,nope)'}"],
        "resampling='choice(sqrt, nope)'", "nope")
    add("cli-log-choice", [*SWEEP, "optimizer.lr=tag(log, choice(0.01,0.1))"],
        "optimizer.lr='tag(log, choice(0.01,0.1))'", "interval(low, high) only")
    add("cli-log-range", [*SWEEP, "trainer.epochs=tag(log, range(1,5))"], "trainer.epochs='tag(log, range(1,5))'")
    add("cli-unknown-tag", [*SWEEP, "optimizer.lr=tag(lg, interval(0.001,0.1))"], "optimizer.lr=", "unknown tag lg")
    add("cli-empty-interval", [*SWEEP, "optimizer.lr=interval(0.1,0.01)"], "optimizer.lr='interval(0.1,0.01)'")
    add("cli-batch-above-train", [*SWEEP, "trainer.batch_size=choice(64,100000)"],
        "trainer.batch_size='choice(64, 100000)'", "100000")
    add("cli-batch-fixed-above-train", [*SWEEP, "trainer.batch_size=100000"], "trainer.batch_size=100000")
    add("cli-objective-unknown", [*SWEEP, "objective.metric=val/nosuch"], "objective.metric='val/nosuch'")
    add("cli-objectives-unknown", [*SWEEP, "objective.metrics=[{metric:val/nosuch,direction:maximize},"
                                           "{metric:val/ece,direction:minimize}]"],
        "objective.metrics[0].metric='val/nosuch'")
    add("cli-objective-test", [*SWEEP, "objective.metric=test/acc"], "objective.metric='test/acc'")
    add("cli-heartbeat-negative", [*SWEEP, "hydra.sweeper.heartbeat_interval=-5"],
        "hydra.sweeper.heartbeat_interval=-5")
    add("cli-heartbeat-zero", [*SWEEP, "hydra.sweeper.heartbeat_interval=0"], "hydra.sweeper.heartbeat_interval=0")
    add("cli-workers-per-gpu-zero", [*SWEEP, "hydra.sweeper.workers_per_gpu=0"], "hydra.sweeper.workers_per_gpu=0")
    add("cli-heartbeat-text", [*SWEEP, "hydra.sweeper.heartbeat_interval=abc"], "hydra.sweeper.heartbeat_interval",
        "abc")
    add("cli-seed-text", [*SWEEP, "hydra.sweeper.sampler.seed=abc"], "hydra.sweeper.sampler.seed='abc'",
        "must be an integer")
    add("cli-seed-float", [*SWEEP, "hydra.sweeper.sampler.seed=1.5"], "hydra.sweeper.sampler.seed=1.5",
        "must be an integer")
    add("cli-sampler", [*SWEEP, "hydra/sweeper/sampler=nope"], "hydra/sweeper/sampler=nope", "random, tpe")
    add("cli-sampler-name", [*SWEEP, "hydra.sweeper.sampler.name=random"], "hydra.sweeper.sampler.name",
        "hydra/sweeper/sampler=random")
    add("cli-pruner", [*SWEEP, "hydra.sweeper.pruner.name=nope"], "hydra.sweeper.pruner.name='nope'")
    add("cli-direction", [*SWEEP, "hydra.sweeper.direction=upward"], "hydra.sweeper.direction='upward'",
        "minimize or maximize")
    add("cli-direction-own-app", [*SWEEP, "hydra.sweeper.direction=minimize"], "hydra.sweeper.direction='minimize'",
        "objective.direction")
    add("cli-seed-key", [*SWEEP, "hydra.sweeper.seed_key=trainer.nope"], "hydra.sweeper.seed_key='trainer.nope'",
        "not a key")
    add("cli-custom-space", [*SWEEP, "hydra.sweeper.custom_search_space=nope.configure"],
        "hydra.sweeper.custom_search_space='nope.configure'", "imported")
    add("cli-sampler-key", [*SWEEP, "+hydra.sweeper.sampler.nosuch=1"], "hydra.sweeper.sampler.nosuch=1")
    add("cli-n-trials", [*SWEEP, "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0")
    add("cli-space-invalid-everywhere", [*SWEEP, "loss=focal", "loss.gamma=interval(-5,-1)"],
        "loss.gamma='interval(-5, -1)'", "searches -5.0", ">= 0")
    add("cli-space-invalid-choice", [*SWEEP, "trainer.batch_size=choice(0,64)"],
        "trainer.batch_size='choice(0, 64)'", "searches 0", ">= 1")
    add("cli-study-slash", [*SWEEP, "hydra.sweeper.study_name=n92/sub"], "hydra.sweeper.study_name='n92/sub'",
        "without '/'")
    add("cli-study-empty", [*SWEEP, "hydra.sweeper.study_name=''"], "hydra.sweeper.study_name=''", "non-empty")
    add("cli-study-long", [*SWEEP, "hydra.sweeper.study_name=" + "s" * 278], "(278 characters)", "at most 100")
    add("cli-n-jobs", [*SWEEP, "hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs=0")
    add("cli-failure-rate", [*SWEEP, "hydra.sweeper.max_failure_rate=2"], "hydra.sweeper.max_failure_rate=2.0")
    add("cli-storage-unwritable", [*SWEEP, f"hydra.sweeper.storage={NO_DIR}/journal.log"],
        f"hydra.sweeper.storage='{NO_DIR}/journal.log'", "cannot create")
    add("cli-storage-database-down", [*SWEEP, "hydra.sweeper.storage=postgresql://u:secret@127.0.0.1:{closed}/x"],
        "hydra.sweeper.storage='postgresql://u:***@127.0.0.1:{closed}/x'", "Connection refused")
    add("cli-storage-under-file", [*SWEEP, "hydra.sweeper.storage=afile/journal.log"],
        "hydra.sweeper.storage='afile/journal.log'", "is a file")
    add("cli-storage-folder", [*SWEEP, "hydra.sweeper.storage=adir.log"], "hydra.sweeper.storage='adir.log'",
        "is a folder")
    add("cli-storage-garbage", [*SWEEP, "hydra.sweeper.storage=garbage"], "hydra.sweeper.storage='garbage'")
    add("cli-storage-dialect", [*SWEEP, "hydra.sweeper.storage=nosuch://x"], "hydra.sweeper.storage='nosuch://x'",
        "no such dialect")
    add("cli-storage-driver", [*SWEEP, "hydra.sweeper.storage=mysql://u:pw@127.0.0.1/x"],
        "hydra.sweeper.storage='mysql://u:***@127.0.0.1/x'", "driver is not installed")
    add("cli-storage-sqlite-folder", [*SWEEP, f"hydra.sweeper.storage=sqlite:///{NO_DIR}/o.db"],
        "hydra.sweeper.storage=", "cannot create")
    add("cli-server-unreachable", [*SWEEP, f"tracking.uri={UNREACHABLE}", "tracking.connect_timeout_s=0.5"],
        "tracking.uri='http://127.0.0.1:{closed}'")
    add("cli-uri-garbage", [*SWEEP, "tracking.uri=garbage"], "tracking.uri='garbage'")
    add("cli-state-dir-file", [*SWEEP, "state_dir=afile"], "state_dir='afile'")
    add("cli-study-deleted", [*SWEEP, "hydra.sweeper.study_name=gone"], "hydra.sweeper.study_name='gone'",
        "deleted")
    add("cli-ratio-inf", [*SWEEP, "data.imbalance_ratio=inf"], "data.imbalance_ratio=inf")
    add("cli-csv-folder", [*SWEEP, "data=tabular", "data.path=adir", "data.target=y"], "data.path='adir'",
        "is a folder")
    # resuming a finished study with another space: found before anything is touched
    add("resume-choice-values", [*RESUME, "loss.class_weights=choice(none,sqrt_inverse)"],
        "loss.class_weights='choice(none, sqrt_inverse)'", "choice(none, inverse)", "study_name=base_2")
    add("resume-choice-order", [*RESUME, "loss.class_weights=choice(inverse,none)"],
        "loss.class_weights='choice(inverse, none)'", "their order")
    add("resume-log-scale", [*RESUME, "optimizer.lr=interval(0.001,0.1)"], "optimizer.lr='interval(0.001, 0.1)'",
        "log scale")
    add("resume-kind", [*RESUME, "optimizer.lr=choice(0.001,0.01)"], "optimizer.lr='choice(0.001, 0.01)'", "kind")
    add("resume-arm-choice", [*ARMS, "trainer.batch_size=choice(16,32)"], "trainer.batch_size='choice(16, 32)'",
        "arms/ce", "choice(32, 64)")
    add("resume-other-data", [*RESUME, "data.imbalance_ratio=5"], "hydra.sweeper.study_name='base'", "digest")
    # a new study in another journal, refused by the MLflow side after Optuna created it: removed again
    add("new-study-refused-later", [*RESUME, "hydra.sweeper.storage=other.log", "data.imbalance_ratio=5"],
        "hydra.sweeper.study_name='base'")

    # -- compare -------------------------------------------------------------------------------------
    add("compare-unknown-study", ["compare", "nosuch"], "study 'nosuch'", "known studies")
    add("compare-server-unreachable", ["compare", "base", "--tracking-uri", UNREACHABLE, "--connect-timeout", "0.5"],
        "--tracking-uri='http://127.0.0.1:{closed}'", "--connect-timeout")
    add("compare-server-from-env", ["compare", "base", "--connect-timeout", "0.5"],
        "MLFLOW_TRACKING_URI='http://127.0.0.1:{closed}'", env={"MLFLOW_TRACKING_URI": UNREACHABLE})
    add("compare-uri-garbage", ["compare", "base", "--tracking-uri", "garbage"], "--tracking-uri='garbage'")
    add("compare-uri-scheme", ["compare", "base", "--tracking-uri", "ftp://host/x"], "--tracking-uri='ftp://host/x'")
    add("compare-connect-timeout", ["compare", "base", "--connect-timeout", "0"], "--connect-timeout=0")
    add("compare-no-store", ["compare", "base", "--state-dir", "adir"], "no MLflow store", "adir")
    add("compare-baseline", ["compare", "arms", "--baseline", "nope", "--no-report"], "--baseline='nope'", "ce")
    add("compare-baseline-reseed", ["compare", "arms", "--reseed", "1", "--baseline", "nope"], "--baseline='nope'")
    add("compare-reseed-zero", ["compare", "arms", "--reseed", "0"], "--reseed=0")
    add("compare-reseed-text", ["compare", "arms", "--reseed", "abc"], "--reseed", "'abc'")
    add("compare-jobs-zero", ["compare", "arms", "--reseed", "1", "--jobs", "0"], "--jobs=0")
    add("compare-jobs-alone", ["compare", "arms", "--jobs", "2"], "--jobs=2", "only with --reseed")
    add("compare-top-zero", ["compare", "arms", "--top", "0"], "--top=0")
    add("compare-top-zero-reseed", ["compare", "arms", "--reseed", "1", "--top", "0"], "--top=0")
    add("compare-top-alone", ["compare", "arms", "--top", "2"], "--top=2", "only with --reseed")
    add("compare-metric-test", ["compare", "arms", "--metric", "test/balanced_acc"], "--metric='test/balanced_acc'",
        "validation")
    add("compare-metric-train", ["compare", "arms", "--metric", "train/loss"], "--metric='train/loss'")
    add("compare-metric-unknown", ["compare", "arms", "--metric", "val/nosuch"], "--metric='val/nosuch'",
        "never logged")
    add("compare-format", ["compare", "arms", "--format", "pdf"], "--format", "'pdf'")
    add("compare-test", ["compare", "arms", "--test", "z"], "--test", "'z'")

    # -- export --------------------------------------------------------------------------------------
    add("export-unknown-study", ["export", "nosuch", "--out", "best"], "study 'nosuch'")
    add("export-metric-test", ["export", "base", "--metric", "test/balanced_acc", "--out", "best"],
        "--metric='test/balanced_acc'", "validation")
    add("export-metric-unknown", ["export", "base", "--metric", "val/nosuch", "--out", "best"],
        "--metric='val/nosuch'")
    add("export-top-k", ["export", "base", "--top-k", "0", "--out", "best"], "--top-k=0")
    add("export-trick", ["export", "base", "--trick", "nope", "--out", "best"], "--trick='nope'")
    add("export-arm", ["export", "arms", "--arm", "nope", "--out", "best"], "--arm='nope'", "ce_weighted")
    add("export-server-unreachable", ["export", "base", "--tracking-uri", UNREACHABLE, "--connect-timeout", "0.5"],
        "--tracking-uri='http://127.0.0.1:{closed}'")
    add("export-out-under-file", ["export", "base", "--out", "afile/best"], "afile/best", "cannot write")
    add("export-format", ["export", "base", "--format", "toml"], "--format", "'toml'")

    # -- ui ------------------------------------------------------------------------------------------
    add("ui-port-range", ["ui", "--port", "99999"], "--port=99999", "1..65535")
    add("ui-port-zero", ["ui", "--port", "0"], "--port=0")
    add("ui-port-busy", ["ui", "--port", "{busy}"], "--port={busy}", "in use")
    add("ui-port-text", ["ui", "--port", "abc"], "--port", "'abc'")
    add("ui-host-unknown", ["ui", "--host", "nosuch.invalid"], "--host='nosuch.invalid'")
    add("ui-host-elsewhere", ["ui", "--host", "192.0.2.1"], "--host='192.0.2.1'", "this machine")
    add("ui-workers", ["ui", "--workers", "0"], "--workers=0")
    add("ui-store-server", ["ui", "--backend-store-uri", UNREACHABLE], "--backend-store-uri='http://127.0.0.1:{closed}'",
        "own UI")
    add("ui-store-garbage", ["ui", "--backend-store-uri", "garbage"], "--backend-store-uri='garbage'")
    add("ui-store-database-down", ["ui", "--backend-store-uri", "postgresql://u@127.0.0.1:{closed}/x",
                                   "--connect-timeout", "0.5"], "--backend-store-uri='postgresql://u@127.0.0.1:{closed}/x'")
    add("ui-store-from-env", ["ui"], "MLFLOW_TRACKING_URI='ftp://host/x'", env={"MLFLOW_TRACKING_URI": "ftp://host/x"})
    add("ui-study-unknown", ["ui", "--study", "nosuch"], "--study='nosuch'", "base")
    add("ui-state-dir-file", ["ui", "--state-dir", "afile"], "--state-dir='afile'")

    # -- dashboard -----------------------------------------------------------------------------------
    add("dashboard-port-range", ["dashboard", "--port", "99999"], "--port=99999")
    add("dashboard-port-busy", ["dashboard", "--port", "{busy}"], "--port={busy}", "in use")
    add("dashboard-host-unknown", ["dashboard", "--host", "nosuch.invalid"], "--host='nosuch.invalid'")
    add("dashboard-storage-garbage", ["dashboard", "--storage", "garbage"], "--storage='garbage'")
    add("dashboard-journal-missing", ["dashboard", "--storage", "missing.log"], "--storage='missing.log'",
        "no such journal file")
    add("dashboard-journal-folder", ["dashboard", "--storage", "adir.log"], "--storage='adir.log'", "is a folder")
    add("dashboard-journal-damaged", ["dashboard", "--storage", "garbage.log"], "--storage='garbage.log'",
        "damaged at line 2", "first 1 records are intact")
    add("dashboard-sqlite-missing", ["dashboard", "--storage", "sqlite:///missing.db"], "--storage='sqlite:///missing.db'",
        "no such database file")
    add("dashboard-database-down", ["dashboard", "--storage", "postgresql://u:pw@127.0.0.1:{closed}/x"],
        "--storage='postgresql://u:***@127.0.0.1:{closed}/x'", "cannot connect")
    add("dashboard-database-missing", ["dashboard", "--storage", "postgresql://postgres@127.0.0.1:5432/imbsweep_none"],
        "--storage='postgresql://postgres@127.0.0.1:5432/imbsweep_none'", "cannot connect")
    add("dashboard-driver", ["dashboard", "--storage", "mysql://u@127.0.0.1/x"], "--storage='mysql://u@127.0.0.1/x'",
        "driver is not installed")
    add("dashboard-no-journal", ["dashboard", "--state-dir", "adir"], "journal.log", "no such journal file")
    return [pytest.param(argv, names, env, id=name) for name, argv, names, env in c]


@dataclass
class World:
    """The launch folder every case runs in, with its files, stores and ports."""

    root: Path
    closed: int  # a port nothing listens on
    busy: int  # a port something listens on
    sweeps: Path  # a Hydra search path holding sweep/<name>.yaml

    def fill(self, text: str) -> str:
        """``text`` with ``{closed}``, ``{busy}`` and ``{sweeps}`` filled in (other braces kept)."""
        for name in ("closed", "busy", "sweeps"):
            text = text.replace("{" + name + "}", str(getattr(self, name)))
        return text


def _quiet_main(argv: list[str]) -> int:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(argv)
    assert code == 0, err.getvalue()
    return code


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A launch folder with a finished plain study ``base`` (2 trials), a finished tournament
    ``arms`` (3 arms x 1 trial), a deleted MLflow experiment ``gone``, the files the data
    cases read, sweep files, and a listening socket."""
    root = tmp_path_factory.mktemp("bad_input")
    (root / "afile").write_text("not a folder\n")
    (root / "adir").mkdir()
    (root / "adir.log").mkdir()
    (root / "empty.csv").write_text("")
    (root / "garbage.log").write_text("{\"op_code\": 0}\nnot json at all\n")  # a journal with a damaged record
    (root / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (root / "good.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 7},{'yes' if i % 3 else 'no'}\n" for i in range(90)))
    sweeps = root / "searchpath"
    (sweeps / "sweep").mkdir(parents=True)
    for name, sweeper in SWEEP_FILES.items():
        budget = "" if "arms:" in sweeper else "    n_trials: 2\n"
        (sweeps / "sweep" / f"{name}.yaml").write_text(BASE_FILE.format(name=name, sweeper=budget + sweeper,
                                                                        top=TOP_LEVEL.get(name, "")))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        _quiet_main(["sweep", "smoke", "trainer.epochs=1", "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=base"])
        _quiet_main(["sweep", "smoke_arms", "trainer.epochs=1", "hydra.sweeper.trials_per_arm=1",
                     "hydra.sweeper.study_name=arms"])
    client = mlflow_client(root)
    client.delete_experiment(client.create_experiment("gone"))
    busy = socket.create_server(("127.0.0.1", 0))
    try:
        yield World(root, free_port(), busy.getsockname()[1], sweeps)
    finally:
        busy.close()


def _stores(root: Path) -> dict[str, Any]:
    """Everything a case could change: every study of every journal (each trial's number,
    state, params, values and attributes) and every MLflow experiment and run."""
    from mlflow.entities import ViewType

    state: dict[str, Any] = {}
    for journal in JOURNALS:
        path = root / journal
        if not path.exists():
            state[journal] = {}
            continue
        storage = journal_storage(path)
        state[journal] = {s.study_name: [(t.number, t.state.name, t.params, repr(t.values), t.user_attrs,
                                          t.system_attrs) for t in optuna.load_study(
                                              study_name=s.study_name, storage=storage).trials]
                          for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    client = mlflow_client(root)
    exps = client.search_experiments(view_type=ViewType.ALL)
    state["experiments"] = sorted((e.name, e.lifecycle_stage) for e in exps)
    runs = client.search_runs([e.experiment_id for e in exps], run_view_type=ViewType.ALL, max_results=1000)
    # values as text: a NaN (a diverged run's loss) equals itself only so
    state["runs"] = {r.info.run_id: (r.info.status, r.info.end_time, r.data.tags,
                                     {k: repr(v) for k, v in r.data.metrics.items()}, r.data.params) for r in runs}
    return state


def _no_exec(*args: Any) -> None:
    raise AssertionError(f"the command got through its checks and would start {args[-1]}")


def _running(state: dict[str, Any]) -> list[str]:
    trials = [f"{study} trial {t[0]}" for journal in JOURNALS for study, trials in state[journal].items()
              for t in trials if t[1] == "RUNNING"]
    return trials + [f"run {rid}" for rid, r in state["runs"].items() if r[0] == "RUNNING"]


def _run(world: World, argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
         env: dict[str, str] | None = None) -> tuple[int, str, str]:
    monkeypatch.chdir(world.root)
    monkeypatch.setattr(os, "execv", _no_exec)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, world.fill(value))
    capsys.readouterr()
    code = main([world.fill(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("argv", "names", "env"), _cases())
def test_bad_input_is_one_line_exit_2_and_nothing_is_touched(
        world: World, argv: list[str], names: list[str], env: dict[str, str],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    before = _stores(world.root)
    assert {"base", "arms/ce", "arms/ce_weighted", "arms/logit_adjusted"} <= set(before[JOURNALS[0]])
    code, out, err = _run(world, argv, capsys, monkeypatch, env)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("imbsweep: error: "), err
    for name in names:
        assert world.fill(name) in lines[0], lines[0]
    assert "Traceback" not in out + err
    after = _stores(world.root)
    assert not _running(after)
    assert after == before  # no run, trial, study or experiment created; the finished studies untouched


@pytest.mark.parametrize("argv", [
    ["run", "trainer.epochs=1", "hydra.run.dir={ro}/out"],
    ["sweep", "smoke", "trainer.epochs=1", "hydra.sweeper.study_name=base", "hydra.sweeper.n_trials=3",
     "hydra.sweep.dir={ro}/out"],
], ids=["run-dir-read-only", "sweep-dir-read-only"])
def test_an_output_folder_hydra_cannot_write_is_one_line(
        world: World, argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """hydra.run.dir / hydra.sweep.dir on a read-only file system (a read-only folder for a
    user who is not root): Hydra's OSError naming no key, exit 1, and for a sweep a trial left
    RUNNING, before; now one line naming the key, exit 2, nothing touched."""
    with tmpfs(tmp_path / "ro", "size=64k,ro") as ro:
        before = _stores(world.root)
        code, out, err = _run(world, [a.replace("{ro}", str(ro)) for a in argv], capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    key = argv[-1].split("=")[0]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"imbsweep: error: {key}='{ro}"), err
    assert "read-only file system" in lines[0].lower() and "Traceback" not in out + err
    assert _stores(world.root) == before


def test_imbsweep_ui_in_a_read_only_folder_without_a_store_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`imbsweep ui` where no store exists and none can be made (a read-only folder) started
    mlflow ui, which looped through its retries (or exit 1 with a traceback); now one line, exit 2.
    A store that exists in a read-only folder is served as before (mlflow ui reads it)."""
    with tmpfs(tmp_path / "ro", "size=64k,ro") as ro:
        monkeypatch.chdir(ro)
        monkeypatch.setattr(os, "execv", _no_exec)
        code = main(["ui", "--port", str(free_port())])
    out, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in out + err, err
    folder = ro / "mlruns"
    assert err.startswith(f"imbsweep: error: --state-dir='mlruns': cannot create or write the folder {folder} ("), err
    assert "read-only file system" in err


def test_the_matrix_covers_every_surface() -> None:
    """At least 80 cases, each of the seven surfaces among them."""
    ids = [p.id for p in _cases()]
    assert len(ids) >= 80 and len(set(ids)) == len(ids)
    for surface in ("run-", "file-", "cli-", "compare-", "export-", "ui-", "dashboard-"):
        assert any(i.startswith(surface) for i in ids), surface


@pytest.mark.parametrize("command", ["run", "compare"])
def test_an_unreachable_tracking_server_is_one_line_within_15_s(
        world: World, command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default wait (8 s of retries), not MLflow's four minutes."""
    argv = [*RUN, f"tracking.uri={UNREACHABLE}"] if command == "run" else ["compare", "base", "--tracking-uri",
                                                                          UNREACHABLE]
    t0 = time.monotonic()
    code, _, err = _run(world, argv, capsys, monkeypatch)
    elapsed = time.monotonic() - t0
    assert code == 2 and f"http://127.0.0.1:{world.closed}" in err and err.count("\n") == 1, err
    assert 7.9 <= elapsed <= 15, elapsed  # it did retry (for 8 s by default), and it gave up in time


def test_a_default_outside_a_choice_is_left_to_the_sampler_with_one_warning(
        world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """optimizer.lr's default 0.005 is not one of the choices: the first trial is still the
    baseline, its lr drawn from the choice, and one warning names the key."""
    argv = ["sweep", "smoke", "trainer.epochs=1", "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=lr_choice",
            "optimizer.lr=choice(0.01,0.02)"]
    code, out, err = _run(world, argv, capsys, monkeypatch)
    assert code == 0, err
    warned = [line for line in (out + err).splitlines() if "outside its search space" in line]
    assert len(warned) == 1 and "optimizer.lr=0.005" in warned[0] and "choice(0.01, 0.02)" in warned[0], out
    study = journal_study(world.root / JOURNALS[0], "lr_choice")
    first = study.trials[0]
    assert first.user_attrs["imbsweep:baseline"] is True and first.params["loss.class_weights"] == "none"
    assert first.params["optimizer.lr"] in (0.01, 0.02)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert not _running(_stores(world.root))


@pytest.mark.parametrize("argv", [["ui", "--port", "99999"], ["dashboard", "--storage", "garbage"],
                                  ["compare", "nosuch", "--format", "pdf"]], ids=["ui", "dashboard", "argparse"])
def test_the_installed_command_exits_2_with_one_line(world: World, argv: list[str]) -> None:
    """The exit code a shell sees (``mlflow ui`` itself exits 0 when it cannot bind)."""
    p = subprocess.run([*CLI, *argv], cwd=world.root, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and p.stderr.startswith("imbsweep: error: "), p.stderr
    assert "Traceback" not in p.stdout + p.stderr


def _bare(pg_url: str) -> str:
    """The form of a PostgreSQL URL docs/sweeps.md shows: no driver named (SQLAlchemy 2.1 reads it as psycopg 3)."""
    import importlib.util

    from imbsweep._stores import sqlalchemy_url

    assert importlib.util.find_spec("psycopg") is None  # what these tests are about: only psycopg2 is here
    bare = pg_url.replace("postgresql+psycopg2://", "postgresql://")
    assert bare != pg_url and sqlalchemy_url(bare) == pg_url
    return bare


def test_the_readme_s_postgresql_url_works_for_a_sweep_and_optuna_dashboard(
        tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    bare = _bare(pg_url)
    monkeypatch.chdir(tmp_path)
    code = main(["sweep", "smoke", "trainer.epochs=1", "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=pg",
                 f"hydra.sweeper.storage={bare}"])
    assert code == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="pg", storage=pg_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    port = free_port()
    proc = start_server([*CLI, "dashboard", "--storage", bare, "--port", str(port)], cwd=tmp_path, env=cli_env())
    try:
        body = json.loads(wait_for_http(f"http://127.0.0.1:{port}/api/studies", proc))
        assert "pg" in {s["study_name"] for s in body["study_summaries"]}
    finally:
        stop_server(proc)


def test_the_bare_postgresql_url_works_as_an_mlflow_store(tmp_path: Path, pg_url: str,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    bare = _bare(pg_url)
    monkeypatch.chdir(tmp_path)
    assert main(["run", *TINY, "trainer.epochs=1", f"tracking.uri={bare}", "tracking.experiment=pg"]) == 0, \
        capsys.readouterr().err
    from imbsweep._client import make_client

    client = make_client(pg_url)
    exp = client.get_experiment_by_name("pg")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"


def test_the_cli_in_process_keeps_the_callers_state() -> None:
    """The CLI called in-process leaves the caller's sys.argv and HYDRA_FULL_ERROR as they were
    (the second call of the matrix used to see HYDRA_FULL_ERROR=1 and raise tracebacks)."""
    argv_before = list(sys.argv)
    assert "HYDRA_FULL_ERROR" not in os.environ
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["run", "loss=hinge"]) == 2
    assert sys.argv == argv_before and "HYDRA_FULL_ERROR" not in os.environ
