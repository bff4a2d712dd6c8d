"""``imbsweep._spool`` and ``_writer``: a sweep trial's MLflow writes go through a spool file
and a writer process. The record is the one written in place; a spool left by a kill is
applied by the next command, exactly once; a writer's error is one line that keeps the spool."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.stores import mlflow_client, runs

SMOKE = ("sweep", "smoke", "hydra.sweeper.n_trials=3")
TIMING = {"fit_time_s"}  # the one value that differs between two runs of one config
# tags that name the study, its parent run, the spool, or say how the run was recorded
OWN = {"imbsweep.study", "mlflow.parentRunId", "imbsweep.record"}


def _record(workdir: Path, study: str) -> dict[str, Any]:
    """Every trial run of ``study``: params, metric histories (steps and values), tags, artifacts' bytes."""
    client = mlflow_client(workdir)
    out = {}
    for r in runs(workdir, study):
        if r.data.tags.get("imbsweep.role") == "parent":
            continue
        folder = Path(r.info.artifact_uri.removeprefix("file://"))
        files = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())
                 if f.name != "config.yaml"}  # config.yaml holds tracking.spool, a param that differs on purpose
        out[r.info.run_name] = {
            "status": r.info.status,
            "params": {k: v for k, v in r.data.params.items() if k != "tracking.spool"},
            "metrics": {k: [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, k)]
                        for k in r.data.metrics if k not in TIMING},
            "tags": {k: v for k, v in r.data.tags.items() if k not in OWN},
            "inputs": [(d.dataset.name, d.dataset.digest) for d in (r.inputs.dataset_inputs if r.inputs else [])],
            "files": files,
        }
    return out


def test_a_spooled_sweep_records_what_an_unspooled_one_does(tmp_path: Path) -> None:
    for name, spool in (("spooled", "true"), ("inplace", "false")):
        p = run_cli(tmp_path, *SMOKE, f"hydra.sweeper.study_name={name}", f"tracking.spool={spool}")
        assert p.returncode == 0, p.stderr
    spooled, inplace = _record(tmp_path, "spooled"), _record(tmp_path, "inplace")
    assert len(spooled) == 3 and set(spooled) == set(inplace)
    for name in spooled:
        assert spooled[name] == inplace[name], name
    assert all(r["status"] == "FINISHED" and len(r["files"]) == 3 for r in spooled.values())
    assert not list((tmp_path / "mlruns" / "spool").glob("*"))  # applied and removed
    (r,) = [r for r in runs(tmp_path, "spooled") if r.info.run_name == "ce trial-0"]
    assert r.data.tags["imbsweep.record"].endswith(":r1")


def _experiment(workdir: Path) -> tuple[str, str]:
    from imbsweep._paths import local_tracking_uri

    uri = local_tracking_uri(workdir / "mlruns")
    client = mlflow_client(workdir)
    return uri, str(client.create_experiment("spooled", artifact_location=(workdir / "art").as_uri()))


def _ops(exp: str, record: str) -> list[dict[str, Any]]:
    return [{"op": "create", "key": "r1", "experiment_id": exp, "run_name": "left",
             "tags": {"imbsweep.record": record}},
            {"op": "batch", "key": "r1", "params": [["a", "1"]]},
            {"op": "batch", "key": "r1", "metrics": [["m", 0.5, 1000, 1], ["m", 0.25, 2000, 2]], "tags": {"t": "v"}},
            {"op": "files", "key": "r1", "texts": {"note.txt": "hello"}, "confusion": None},
            {"op": "end", "key": "r1", "status": "FINISHED"}]


def test_a_spool_left_by_a_kill_is_applied_once_by_the_next_command(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The writer was killed after creating the run but before noting it (the worst moment):
    the replay finds the run by its record tag instead of creating a second one, and a metric
    value applied twice is stored once. A torn last line is dropped, with a warning."""
    from imbsweep._spool import settle
    from imbsweep._writer import Applier

    uri, exp = _experiment(tmp_path)
    folder = tmp_path / "mlruns" / "spool"
    folder.mkdir()
    dead = 2 ** 22 + 12345  # above the kernel's default pid_max: never a live process
    spool = folder / f"{os.uname().nodename}-{dead}-0-deadbeef.spool"
    ops = _ops(exp, f"{spool.name}:r1")
    applied = Applier(uri)
    applied.apply(ops[0])  # created, not noted
    applied.apply(ops[2])  # and its metrics applied once already
    spool.write_text("".join(json.dumps(o) + "\n" for o in ops) + '{"op": "batch", "key": "r1", "met')
    assert settle(folder, uri) == 1
    client = mlflow_client(tmp_path)
    (run,) = client.search_runs([exp])
    assert run.info.status == "FINISHED" and run.info.run_name == "left"
    assert run.data.params == {"a": "1"} and run.data.tags["t"] == "v"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "m")] == [(1, 0.5), (2, 0.25)]
    assert (Path(run.info.artifact_uri.removeprefix("file://")) / "note.txt").read_text() == "hello"
    assert not list(folder.iterdir())
    assert any("torn last record" in r.getMessage() for r in caplog.records)


def test_a_live_processs_spool_is_left_to_it(tmp_path: Path) -> None:
    from imbsweep._spool import settle

    uri, exp = _experiment(tmp_path)
    folder = tmp_path / "mlruns" / "spool"
    folder.mkdir()
    from imbsweep._liveness import proc_start

    parent = os.getppid()  # pytest's parent: alive
    spool = folder / f"{os.uname().nodename}-{parent}-{proc_start(parent)}-cafe.spool"
    spool.write_text("".join(json.dumps(o) + "\n" for o in _ops(exp, "x")))
    assert settle(folder, uri) == 0 and spool.exists()
    assert mlflow_client(tmp_path).search_runs([exp]) == []
    recycled = spool.rename(folder / f"{os.uname().nodename}-{parent}-1-cafe.spool")  # its pid, another start
    assert settle(folder, uri) == 1 and not recycled.exists()
    assert len(mlflow_client(tmp_path).search_runs([exp])) == 1


def test_a_writers_error_is_one_line_and_keeps_the_spool(tmp_path: Path) -> None:
    from imbsweep._spool import Spool
    from imbsweep.errors import StorageError

    uri, exp = _experiment(tmp_path)
    spool = Spool(uri, tmp_path / "mlruns" / "spool")
    spool.submit({"op": "create", "key": "r1", "experiment_id": exp, "run_name": "ok", "tags": {}})
    assert len(spool.run_id("r1")) == 32
    spool.submit({"op": "end", "key": "r2", "status": "FINISHED"})  # a run it never created: refused, skipped
    spool.submit({"op": "end", "key": "r1", "status": "FINISHED"})
    spool.close()  # the rest was applied
    (run,) = mlflow_client(tmp_path).search_runs([exp])
    assert run.info.status == "FINISHED"

    spool = Spool(uri, tmp_path / "mlruns" / "spool")  # a store that cannot be written stops the writer
    spool.submit({"op": "create", "key": "r1", "experiment_id": exp, "run_name": "ok", "tags": {}})
    folder = Path(mlflow_client(tmp_path).get_run(spool.run_id("r1")).info.artifact_uri.removeprefix("file://"))
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("")  # a file where the run's artifact folder goes: the files cannot be written
    spool.submit({"op": "files", "key": "r1", "texts": {"note.txt": "hello"}})
    with pytest.raises(StorageError) as err:
        spool.close()
    text = str(err.value)
    assert "\n" not in text and text.startswith("the MLflow writer process stopped: ")
    assert str(spool.path) in text and spool.path.exists()  # kept for the next command
    with pytest.raises(StorageError):  # and every later write is refused with the same line
        spool.submit({"op": "end", "key": "r1", "status": "FINISHED"})


def test_a_killed_writer_is_started_again_and_loses_nothing(tmp_path: Path) -> None:
    import signal

    from imbsweep._spool import Spool

    uri, exp = _experiment(tmp_path)
    spool = Spool(uri, tmp_path / "mlruns" / "spool")
    ops = _ops(exp, "")
    ops[0]["tags"] = {"imbsweep.record": spool.record_tag("r1")}
    for op in ops[:2]:
        spool.submit(op)
    run_id = spool.run_id("r1")
    assert spool._proc is not None
    first = spool._proc.pid
    os.kill(first, signal.SIGKILL)
    spool._proc.wait()
    for op in ops[2:]:
        spool.submit(op)  # finds the writer gone, starts another on the same spool
    spool.close()
    assert spool._proc.pid != first and not spool.path.exists()
    client = mlflow_client(tmp_path)
    (run,) = client.search_runs([exp])  # one run: the second writer did not create it again
    assert run.info.run_id == run_id and run.info.status == "FINISHED" and run.data.params == {"a": "1"}
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "m")] == [(1, 0.5), (2, 0.25)]


def _poll(check: Any, timeout: float = 10.0) -> float:
    """Seconds until ``check()`` is true (fails the test after ``timeout``)."""
    import time

    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.05)
    return time.monotonic() - t0


@pytest.mark.slow  # (a 12-16 s stress test on 2 cores: make test-all; make test stays under 15 minutes)
def test_the_writer_takes_only_idle_cpu_and_holds_its_work_while_the_trial_trains(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer runs at the lowest CPU priority, and what arrives while the producer trains
    waits for the training's end, or at most ``HOLD_S``: its work lands between trials, not
    among the training's threads."""
    import time

    from imbsweep._spool import Spool

    HOLD_S = 5.0  # (2 s by default): room for an idle-priority writer on a busy machine
    monkeypatch.setenv("IMBSWEEP_WRITER_HOLD_S", str(HOLD_S))

    uri, exp = _experiment(tmp_path)
    client = mlflow_client(tmp_path)
    spool = Spool(uri, tmp_path / "mlruns" / "spool")
    spool.submit({"op": "create", "key": "r1", "experiment_id": exp, "run_name": "held", "tags": {}})
    run_id = spool.run_id("r1")
    assert spool._proc is not None
    if hasattr(os, "sched_getscheduler"):
        assert os.sched_getscheduler(spool._proc.pid) == os.SCHED_IDLE
    spool.training(True)
    spool.submit({"op": "batch", "key": "r1", "params": [["a", "1"]]})
    time.sleep(1.0)
    assert client.get_run(run_id).data.params == {}  # held while training
    spool.training(False)
    assert _poll(lambda: client.get_run(run_id).data.params == {"a": "1"}) < HOLD_S - 1  # applied at its end
    spool.training(True)
    t0 = time.monotonic()
    spool.submit({"op": "batch", "key": "r1", "params": [["b", "2"]]})
    _poll(lambda: "b" in client.get_run(run_id).data.params)  # a long training: applied after HOLD_S anyway
    assert HOLD_S - 0.1 <= time.monotonic() - t0 < HOLD_S + 5
    spool.training(False)
    spool.submit({"op": "batch", "key": "r1", "params": [["c", "3"]]})
    assert _poll(lambda: "c" in client.get_run(run_id).data.params) < HOLD_S - 1  # not training: at once
    spool.training(True)
    # a run created while the producer trains is made at once (it may be waiting for its id),
    # with what was spooled before it; what comes after it is held
    t0 = time.monotonic()
    spool.submit({"op": "batch", "key": "r1", "params": [["e", "5"]]})
    spool.submit({"op": "create", "key": "r2", "experiment_id": exp, "run_name": "next", "tags": {}})
    spool.submit({"op": "batch", "key": "r2", "params": [["d", "4"]]})
    second = spool.run_id("r2")
    assert time.monotonic() - t0 < HOLD_S - 1 and "e" in client.get_run(run_id).data.params
    time.sleep(1.0)
    assert client.get_run(second).data.params == {}
    spool.training(False)
    assert _poll(lambda: client.get_run(second).data.params == {"d": "4"}) < HOLD_S - 1
    for key in ("r1", "r2"):
        spool.submit({"op": "end", "key": key, "status": "FINISHED"})
    spool.close()
    assert client.get_run(run_id).info.status == client.get_run(second).info.status == "FINISHED"


def test_a_runs_batches_spooled_together_are_one_write_and_a_refused_one_loses_only_itself(tmp_path: Path) -> None:
    """The writer merges a run's batches that it finds together (one ``log_batch``: fewer
    SQLite transactions), not across the run's end nor over a param set twice; when MLflow
    refuses the merged write, its parts are applied one by one and only the bad one is
    skipped, with a warning."""
    import json

    from imbsweep._writer import Replay, coalesce

    uri, exp = _experiment(tmp_path)
    ops = [{"op": "create", "key": "r1", "experiment_id": exp, "run_name": "merged", "tags": {}},
           {"op": "batch", "key": "r1", "params": [["a", "1"]]},
           {"op": "files", "key": "r1", "texts": {"config.yaml": "a: 1\n"}},
           {"op": "batch", "key": "r1", "metrics": [["m", 0.5, 1000, 1]], "tags": {"t": "x"}},
           {"op": "batch", "key": "r1", "metrics": [["bad metric?", 1.0, 1000, 1]], "tags": {"t": "y"}},
           {"op": "batch", "key": "r1", "params": [["a", "1"]]},  # the same param again: not merged
           {"op": "end", "key": "r1", "status": "FINISHED"},
           {"op": "batch", "key": "r1", "tags": {"after": "end"}}]
    steps = [(i, op) for i, op in enumerate(ops)]
    merged = coalesce(steps)
    assert [op["op"] if op else None for _, op, _ in merged] == \
        ["create", "batch", "files", None, None, "batch", "end", "batch"]
    assert merged[1][1]["tags"] == {"t": "y"} and len(merged[1][1]["metrics"]) == 2 and len(merged[1][2]) == 3
    spool = tmp_path / "mlruns" / "spool" / "by-hand.spool"
    spool.parent.mkdir(parents=True)
    spool.write_text("".join(json.dumps(op, separators=(",", ":")) + "\n" for op in ops))
    replay = Replay(spool, uri, recovering=False)
    replay.step(final=True)
    replay.finish()
    (skipped,) = replay.skipped
    assert skipped.startswith("batch r1: ") and "bad metric?" in skipped
    client = mlflow_client(tmp_path)
    (run,) = client.search_runs([exp])
    assert run.info.status == "FINISHED" and run.data.params == {"a": "1"}
    assert run.data.tags["t"] == "x" and run.data.tags["after"] == "end" and run.data.metrics == {"m": 0.5}


def _state(pid: int) -> str:
    """A process's state letter (``T``: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


_KILLED_WHILE_TRAINING = """
import os, signal, sys
from pathlib import Path
from imbsweep._spool import Spool
spool = Spool(sys.argv[1], Path(sys.argv[2]))
spool.submit({"op": "create", "key": "r1", "experiment_id": sys.argv[3], "run_name": "orphan", "tags": {}})
spool.run_id("r1")
spool.training(True)
spool.submit({"op": "batch", "key": "r1", "params": [["a", "1"]]})
spool.submit({"op": "end", "key": "r1", "status": "FINISHED"})
print(spool._proc.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_producer_killed_while_it_trains_leaves_its_writer_to_finish(tmp_path: Path) -> None:
    """Its writer applies what was spooled, answering no one (the producer is gone: that is
    no error), removes the spool and ends."""
    import subprocess

    uri, exp = _experiment(tmp_path)
    p = subprocess.run([sys.executable, "-c", _KILLED_WHILE_TRAINING, uri, str(tmp_path / "mlruns" / "spool"), exp],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -9, p.stderr
    pid = int(p.stdout.split()[0])
    _poll(lambda: not Path(f"/proc/{pid}").exists() or _state(pid) == "Z", timeout=60)
    (run,) = mlflow_client(tmp_path).search_runs([exp])
    assert run.data.params == {"a": "1"} and run.info.status == "FINISHED"
    assert not list((tmp_path / "mlruns" / "spool").glob("*"))  # applied and removed, the log too


def test_a_new_run_waits_for_a_writer_left_behind(tmp_path: Path) -> None:
    """On a machine with no idle CPU the writer would fall ever further behind: a run starts
    once at most one ended run is not applied yet."""
    import signal
    import threading

    from imbsweep._spool import Spool

    uri, exp = _experiment(tmp_path)
    spool = Spool(uri, tmp_path / "mlruns" / "spool")

    def run(key: str) -> None:
        spool.submit({"op": "create", "key": key, "experiment_id": exp, "run_name": key, "tags": {}})
        spool.submit({"op": "end", "key": key, "status": "FINISHED"})

    run("r1")
    _poll(lambda: spool._read(block=False) and spool._applied >= spool._ends[-1])  # r1 is in MLflow
    assert spool._proc is not None
    os.kill(spool._proc.pid, signal.SIGSTOP)  # from here the writer gets no CPU
    try:
        run("r2")
        run("r3")  # one ended run (r2) not applied: r3 starts
        last = threading.Thread(target=run, args=("r4",))
        last.start()
        last.join(0.5)
        assert last.is_alive()  # two (r2, r3): r4 waits
    finally:
        os.kill(spool._proc.pid, signal.SIGCONT)
    last.join(10)
    assert not last.is_alive()
    spool.close()
    names = sorted(r.info.run_name for r in mlflow_client(tmp_path).search_runs([exp]))
    assert names == ["r1", "r2", "r3", "r4"]


def test_the_writers_csv_is_what_pandas_writes() -> None:
    """per_class.csv and posthoc.csv are written without building a DataFrame (a few ms a run
    in the writer), byte for byte as ``DataFrame(columns).to_csv(index=False)``: gaps empty,
    a column of numbers with a gap or a float in it as floats, odd label names quoted."""
    import random

    import pandas as pd

    from imbsweep._writer import csv_text

    pool = [1, 2, 0, -3, 0.5, 1.0, 0.1 + 0.2, float("nan"), None, True, False, "x", "1", "a,b", 'say "hi"',
            "two\nlines", "ünï", "", 1e-07, 2**40, float("inf"), -0.0]
    rnd = random.Random(0)
    for _ in range(2000):
        n = rnd.randint(1, 5)
        cols = {f"c{j}": [rnd.choice(pool) for _ in range(n)] for j in range(rnd.randint(1, 4))}
        assert csv_text(cols) == pd.DataFrame(cols).to_csv(index=False), cols


def test_a_writer_started_early_and_given_nothing_leaves_nothing(tmp_path: Path) -> None:
    """A sweep starts its writer before its first run (the writer's start, ~1 s of imports,
    then overlaps the sweep's); a sweep that stops before any run ends it at once, leaving
    no spool, and one that goes on uses it as any other."""
    import time

    from imbsweep._spool import Spool

    uri, exp = _experiment(tmp_path)
    folder = tmp_path / "mlruns" / "spool"
    idle = Spool(uri, folder)
    idle.start()
    assert idle._proc is not None and idle.path.exists()
    t0 = time.monotonic()
    idle.close()
    assert time.monotonic() - t0 < 1.0 and idle._proc.returncode is not None and not list(folder.iterdir())
    used = Spool(uri, folder)
    used.start()
    for op in _ops(exp, ""):
        used.submit(op)
    used.close()
    assert not list(folder.iterdir())
    (run,) = mlflow_client(tmp_path).search_runs([exp])
    assert run.info.status == "FINISHED" and run.data.params == {"a": "1"}
