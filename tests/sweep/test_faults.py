"""Faults at the worst moments: a sweep killed (SIGKILL) or interrupted (Ctrl-C) at each step
of a trial's start and end, then resumed with the same command, ends with Optuna and MLflow
agreeing on every trial and nothing left RUNNING."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import cli_env, run_cli
from .test_sweep_cli import _check_one_to_one, _finished, _runs, _study

# Runs the real CLI with one step patched to signal the process itself on the second trial;
# the patch is the only difference from `imbsweep sweep ...`.
FAULTY = """
import os, signal, sys
step, sig = os.environ["FAULT_STEP"], getattr(signal, os.environ["FAULT_SIGNAL"])
seen = []

def hit():
    seen.append(1)
    if len(seen) == 2:
        os.kill(os.getpid(), sig)

if step == "asked":  # the trial is RUNNING in Optuna, before it says which process runs it
    import imbsweep.sweep._runner as r
    real_mark = r.mark_running
    def mark(trial):
        hit()
        real_mark(trial)
    r.mark_running = mark
elif step == "run created":  # the MLflow run exists, the trial does not name it yet
    from mlflow import MlflowClient
    real_create = MlflowClient.create_run
    def create(self, *a, **k):
        run = real_create(self, *a, **k)
        if k.get("tags", {}).get("imbsweep.trial") is not None:
            hit()
        return run
    MlflowClient.create_run = create
elif step == "outcome written":  # the run ended and its outcome is on the trial, not yet told
    import optuna
    real_set = optuna.trial.Trial.set_user_attr
    def set_attr(self, key, value):
        real_set(self, key, value)
        if key == "imbsweep:outcome":
            hit()
    optuna.trial.Trial.set_user_attr = set_attr
from imbsweep.cli import entry
sys.argv = ["imbsweep", *sys.argv[1:]]
entry()
"""
ARGS = ("sweep", "smoke", "hydra.sweeper.study_name=faults", "hydra.sweeper.n_trials=3")


def _faulty(tmp_path: Path, step: str, sig: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "faulty.py"
    script.write_text(FAULTY)
    env = {**cli_env(), "FAULT_STEP": step, "FAULT_SIGNAL": sig}
    return subprocess.run([sys.executable, str(script), *ARGS], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize(("step", "sig"), [("asked", "SIGKILL"), ("run created", "SIGKILL"),
                                           ("outcome written", "SIGKILL"), ("outcome written", "SIGINT")])
def test_a_kill_at_any_step_leaves_nothing_running_and_the_rerun_ends_exact(tmp_path: Path, step: str,
                                                                           sig: str) -> None:
    p = _faulty(tmp_path, step, sig)
    assert p.returncode == (-signal.SIGKILL if sig == "SIGKILL" else 130), p.stderr
    cut = _study(tmp_path, "faults").trials[1]

    p = run_cli(tmp_path, *ARGS)  # the same command resumes
    assert p.returncode == 0, p.stderr
    study = _study(tmp_path, "faults")
    assert len(_finished(study)) == 3
    assert not [t for t in study.trials if t.state.name in ("RUNNING", "WAITING")]
    parent, children = _runs(tmp_path, "faults")
    assert not [r for r in children if r.info.status == "RUNNING"], [r.info.run_name for r in children]
    after = study.trials[cut.number]
    if step == "outcome written":
        # the run had ended: the trial keeps its result, nothing is run again
        assert after.state.name == "COMPLETE" and "imbsweep:requeued" not in after.user_attrs
        assert len(study.trials) == 3
        _check_one_to_one(study, children)
    else:
        assert after.state.name == "FAIL" and after.user_attrs["imbsweep:requeued"] is True
        (redo,) = [t for t in study.trials if t.user_attrs.get("imbsweep:requeued_from") == cut.number]
        assert redo.state.name == "COMPLETE"
        mine = [r for r in children if r.data.tags["imbsweep.trial"] == str(cut.number)]
        if step == "run created":  # the orphan was found by its tags and ended
            assert [(r.info.status, r.data.tags["imbsweep.state"]) for r in mine] == [("FAILED", "failed")]
        else:
            assert mine == []
        _check_one_to_one(study, [r for r in children if r not in mine], skip=(cut.number,))
