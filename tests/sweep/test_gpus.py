"""Workers spread over the visible GPUs: each process a sweep (or ``compare --reseed``) starts
sees one GPU of ``CUDA_VISIBLE_DEVICES``, round-robin, the sweep's own process the first.
The devices are fake (no GPU here, and none is needed): what is checked is the environment
each real process gets."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from imbsweep.compare._reseed import _pin_worker
from imbsweep.sweep._procs import (
    GPU_ENV,
    THREADS_ENV,
    WORKER_ENV,
    gpu_slots,
    start_workers,
    visible_gpus,
    workers_for_gpus,
)
from tests.helpers.cli import cli_env

REPORT = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1] + os.environ['IMBSWEEP_WORKER'], 'w'))"


@pytest.mark.parametrize(("given", "seen"), [
    ("0", ["0"]), ("0,1", ["0", "1"]), ("3, 5,7,1", ["3", "5", "7", "1"]),
    ("GPU-8a1b,GPU-77c0", ["GPU-8a1b", "GPU-77c0"]),  # UUIDs, as nvidia-smi -L names them
    ("", []), ("-1", []), ("2,-1,4", ["2"]),  # CUDA stops at the first invalid entry
])
def test_the_visible_gpus_are_cuda_visible_devices_entries(given: str, seen: list[str]) -> None:
    assert visible_gpus({GPU_ENV: given}) == seen


def test_without_the_variable_the_drivers_gpus_are_visible() -> None:
    driver = Path("/proc/driver/nvidia/gpus")
    n = len(list(driver.iterdir())) if driver.is_dir() else 0
    assert visible_gpus({}) == [str(i) for i in range(n)]


@pytest.mark.parametrize(("gpus", "n_jobs", "slots"), [
    ([], 3, [None, None, None]),
    (["0"], 3, ["0", "0", "0"]),
    (["0", "1"], 5, ["0", "1", "0", "1", "0"]),
    (["4", "5", "6", "7"], 6, ["4", "5", "6", "7", "4", "5"]),
    (["0", "1", "2", "3"], 2, ["0", "1"]),
])
def test_workers_take_the_gpus_round_robin(gpus: list[str], n_jobs: int, slots: list[str | None]) -> None:
    assert gpu_slots(n_jobs, gpus) == slots


def test_workers_per_gpu_caps_the_workers(caplog: pytest.LogCaptureFixture) -> None:
    assert workers_for_gpus(8, 2, ["0", "1"]) == 4
    assert "workers_per_gpu=2 on 2 visible GPU(s): n_jobs 8 lowered to 4" in caplog.text
    assert workers_for_gpus(3, 2, ["0", "1"]) == 3
    assert workers_for_gpus(8, None, ["0"]) == 8  # no limit
    assert workers_for_gpus(8, 1, []) == 8  # no GPU: nothing to share


@pytest.mark.parametrize("devices", ["0", "0,1", "0,1,2,3"])
def test_each_started_worker_sees_its_own_gpu(devices: str, tmp_path: Path) -> None:
    gpus = visible_gpus({GPU_ENV: devices})
    slots = gpu_slots(5, gpus)
    program = [sys.executable, "-c", REPORT, str(tmp_path / "env")]
    procs = start_workers(program, [], 5, tmp_path / "sweep", threads=2, gpus=slots)
    assert all(p.wait(timeout=60) == 0 for p in procs)
    envs = {k: json.loads((tmp_path / f"env{k}").read_text()) for k in range(1, 5)}
    assert {k: e[GPU_ENV] for k, e in envs.items()} == {k: gpus[k % len(gpus)] for k in range(1, 5)}
    assert all(e[THREADS_ENV] == "2" and e[WORKER_ENV] == str(k) for k, e in envs.items())


def test_without_gpus_a_workers_environment_is_left_as_it_is(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GPU_ENV, raising=False)
    program = [sys.executable, "-c", REPORT, str(tmp_path / "env")]
    (p,) = start_workers(program, [], 2, tmp_path / "sweep", threads=None, gpus=gpu_slots(2, []))
    assert p.wait(timeout=60) == 0
    assert GPU_ENV not in json.loads((tmp_path / "env1").read_text())


def _seen() -> tuple[int, str | None]:
    import time

    time.sleep(0.3)  # (every process of the pool gets one)
    return os.getpid(), os.environ.get(GPU_ENV)


def test_reseed_processes_take_the_gpus_round_robin() -> None:
    ctx = mp.get_context("spawn")
    slots = gpu_slots(4, ["0", "1"])
    with ProcessPoolExecutor(max_workers=4, mp_context=ctx, initializer=_pin_worker,
                             initargs=(ctx.Value("i", 0), slots)) as pool:
        seen = dict(f.result() for f in [pool.submit(_seen) for _ in range(8)])
    assert sorted(str(v) for v in seen.values()) == ["0", "0", "1", "1"]  # per process, one GPU; two processes each


APP = '''
import json, os, time
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    time.sleep(1.0)
    with open(os.path.join(cfg.marks, f"{os.getpid()}-{time.time_ns()}.json"), "w") as f:
        json.dump({"pid": os.getpid(), "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                   "worker": os.environ.get("IMBSWEEP_WORKER")}, f)
    return cfg.x ** 2


if __name__ == "__main__":
    main()
'''


@pytest.mark.slow  # (make test-all: make test keeps to its 15 minutes; the GPU slots' arithmetic stays in make test)
def test_a_sweeps_workers_are_spread_over_the_gpus(tmp_path: Path) -> None:
    """n_jobs=5 with workers_per_gpu=2 on GPUs 3 and 5: four workers, two on each, the sweep's
    own process on the first."""
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(
        "defaults:\n  - override hydra/sweeper: imbsweep_optuna\n  - _self_\nx: 0.0\nmarks: ???\n")
    (tmp_path / "marks").mkdir()
    p = subprocess.run([sys.executable, "app.py", "-m", f"marks={tmp_path / 'marks'}", "x=interval(-1, 1)",
                        "hydra.sweeper.n_trials=12", "hydra.sweeper.n_jobs=5", "hydra.sweeper.workers_per_gpu=2"],
                       cwd=tmp_path, env={**cli_env(), GPU_ENV: "3,5"}, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "workers_per_gpu=2 on 2 visible GPU(s): n_jobs 5 lowered to 4" in p.stdout + p.stderr
    marks = [json.loads(f.read_text()) for f in (tmp_path / "marks").glob("*.json")]
    assert len(marks) == 12
    gpu_of = {m["pid"]: m["gpu"] for m in marks}
    assert all(gpu_of[m["pid"]] == m["gpu"] for m in marks)  # a process keeps its GPU
    # worker k (the sweep's own process: 0) on GPU ["3", "5"][k % 2]; no worker 4 (lowered to 4 workers);
    # (which workers get trials before the others have run all 12 depends on the machine's load)
    assert all(m["gpu"] == ["3", "5"][int(m["worker"] or 0) % 2] for m in marks)
    assert {int(m["worker"] or 0) for m in marks} <= {0, 1, 2, 3} and len(set(gpu_of.values())) == 2
