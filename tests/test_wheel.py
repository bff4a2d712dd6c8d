"""imbsweep outside its clone: the wheel installed into a fresh environment, then ``imbsweep``
run from an empty folder, as a user who ran ``pip install imbsweep`` would: imbsweep's own sweep,
a sweep and a model option of the user's (``./sweeps/``, ``./conf/``), ``export`` into the
working folder and ``run +best=`` from there."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from imbsweep._paths import PROJECT_ROOT
from tests.helpers.cli import cli_env
from tests.helpers.stores import runs, trial_runs

SWEEP = """# @package _global_
defaults:
  - override /hydra/sweeper: imbsweep_optuna
  - override /data: digits_lt
  - override /model: mine
trainer: {epochs: 2, batch_size: 64}
hydra:
  mode: MULTIRUN
  sweeper:
    study_name: mine
    n_trials: 2
    sampler: {seed: 0}
    params:
      optimizer.lr: tag(log, interval(1e-3, 1e-1))
"""


def _fresh_env(tmp: Path) -> Path:
    """A new virtual environment with the wheel built from this checkout installed in it, and
    this environment's packages as its dependencies: its ``site-packages`` listed in a ``.pth``
    (appended to ``sys.path``; the ``.pth`` files there, the editable imbsweep's among them, are
    not read), so torch and the rest are not installed again. Returns its ``bin/``."""
    source = tmp / "source"  # a copy: the build's own folders (build/, *.egg-info) stay out of the checkout
    shutil.copytree(PROJECT_ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PROJECT_ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(source)],
                   check=True, capture_output=True, timeout=120)
    (wheel,) = (tmp / "dist").glob("imbsweep-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # (--ignore-installed: the editable imbsweep's record, visible through the .pth, is not touched)
    subprocess.run([python, "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-deps",
                    "--ignore-installed", str(wheel)], check=True, capture_output=True, timeout=120)
    return venv / "bin"


def _env() -> dict[str, str]:
    """The CLI's environment, without what would reach the checkout's code or configs."""
    return {k: v for k, v in cli_env().items() if k not in ("PYTHONPATH", "IMBSWEEP_CONF")}


def _run(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``imbsweep`` script (``bin/imbsweep``) run in ``cwd``."""
    return subprocess.run([str(bin_dir / "imbsweep"), *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=180)


def test_the_wheel_runs_a_sweep_from_an_empty_folder(tmp_path: Path) -> None:
    bin_dir = _fresh_env(tmp_path)
    where = subprocess.run(
        [bin_dir / "python", "-c", "import imbsweep, imbsweep.conf, hydra_plugins.imbsweep_searchpath.searchpath as s, "
         "hydra_plugins.imbsweep_optuna_sweeper as o; print(imbsweep.__file__, s.__file__, o.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True, env=_env()).stdout.split()
    venv = (tmp_path / "venv").resolve()
    assert all(Path(f).resolve().is_relative_to(venv) for f in where), where  # the wheel's, not the checkout's
    package = Path(where[0]).resolve().parent
    assert (package / "conf" / "config.yaml").is_file() and (package / "conf" / "sweep" / "smoke.yaml").is_file()
    assert not (package / "conf" / "sweep").is_symlink()

    work = tmp_path / "work"
    work.mkdir()
    # imbsweep's own sweep, from a folder with nothing in it
    p = _run(bin_dir, work, "sweep", "smoke", "hydra.sweeper.n_trials=1", "trainer.epochs=1")
    assert p.returncode == 0, p.stderr
    parent, (trial,) = trial_runs(work, "smoke")
    assert parent.info.status == "FINISHED"
    assert trial.data.tags["imbsweep.state"] == "complete"
    assert "mlflow.source.git.commit" not in trial.data.tags  # no checkout: no commit (nor the folder's own)

    # the user's own sweep (./sweeps/) with the user's own model option (./conf/model/)
    (work / "sweeps").mkdir()
    (work / "sweeps" / "mine.yaml").write_text(SWEEP)
    (work / "conf" / "model").mkdir(parents=True)
    (work / "conf" / "model" / "mine.yaml").write_text("_target_: imbsweep.models.MLP\nhidden_sizes: [16]\n")
    p = _run(bin_dir, work, "sweep", "mine")
    assert p.returncode == 0, p.stderr
    _, trials = trial_runs(work, "mine")
    assert len(trials) == 2 and all(t.data.tags["imbsweep.choice.model"] == "mine" for t in trials)
    assert all(t.data.params["model.hidden_sizes"] == "[16]" for t in trials)

    # export writes into the working folder, where `run +best=` finds it again
    p = _run(bin_dir, work, "export", "mine")
    assert p.returncode == 0, p.stderr
    exported = work / "conf" / "best" / "mine.yaml"
    assert exported.is_file() and "reproduce: imbsweep run +best=mine" in p.stdout
    assert not (package / "conf" / "best").exists()  # nothing written into the installed package
    best = max(trials, key=lambda t: t.data.metrics["val/balanced_acc"])
    assert best.info.run_id in exported.read_text()
    p = _run(bin_dir, work, "run", "+best=mine", "tracking.experiment=again")
    assert p.returncode == 0, p.stderr
    (again,) = runs(work, "again")
    assert again.data.params["model.hidden_sizes"] == "[16]"
    assert again.data.metrics["val/balanced_acc"] == pytest.approx(best.data.metrics["val/balanced_acc"])
    # everything the commands wrote is in the working folder
    assert sorted(p.name for p in work.iterdir()) == ["conf", "mlruns", "multirun", "outputs", "sweeps"]
