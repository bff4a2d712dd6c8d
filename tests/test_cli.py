"""The real CLI in a subprocess; what it wrote is read back with ``MlflowClient``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from .helpers.cli import CLI, TINY, cli_env, run_cli
from .helpers.stores import free_port, mlflow_client, runs_of

RUN = ("run", *TINY)


def test_same_config_and_seed_give_identical_metrics(workdir: Path) -> None:
    for _ in range(2):
        assert run_cli(workdir, *RUN, "tracking.experiment=determinism").returncode == 0
    a, b = (r.data.metrics for r in runs_of(workdir, "determinism"))
    a.pop("fit_time_s"), b.pop("fit_time_s")
    assert a == b


def _csv(path: Path, rows: dict[str, int]) -> Path:
    lines = ["x,color,label"] + [f"{i},red,{k}" for k, n in rows.items() for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


BAD_INPUT = [
    # (overrides, words the one line must contain)
    (["model=foo"], ["model=foo", "no such option", "cnn1d, logreg, mlp"]),
    (["trainer.foo=1"], ["trainer.foo", "+trainer.foo=1"]),
    (["optimizer.lr=-0.1"], ["optimizer.lr=-0.1", "> 0"]),
    (["optimizer.lr=0"], ["optimizer.lr=0", "> 0"]),
    (["loss.label_smoothing=1.0"], ["loss.label_smoothing=1.0", "[0, 1)"]),
    (["trainer.batch_size=0"], ["trainer.batch_size=0", ">= 1"]),
    (["data.imbalance_ratio=0.5"], ["data.imbalance_ratio=0.5", ">= 1"]),
    (["trainer.epochs=0"], ["trainer.epochs=0", ">= 1"]),
    (["data=tabular", "data.path=missing.csv", "data.target=label"],
     ["data.path='missing.csv'", "no such file"]),
    (["data=tabular", "data.path=ok.csv", "data.target=y"],
     ["data.target='y'", "no such column", "x, color, label"]),
    (["data=tabular", "data.path=tiny.csv", "data.target=label"],
     ["data.target='label'", "class 'q' has 1 example", "at least 2"]),
    (["trainer.epochs=[1"], ["cannot parse override 'trainer.epochs=[1'"]),
]


@pytest.mark.parametrize(("overrides", "words"), BAD_INPUT, ids=lambda v: " ".join(v)[:40])
def test_bad_input_is_one_clear_line_and_leaves_no_run(tmp_path: Path, overrides: list[str],
                                                       words: list[str]) -> None:
    _csv(tmp_path / "ok.csv", {"p": 30, "q": 30})
    _csv(tmp_path / "tiny.csv", {"p": 30, "q": 1})
    p = run_cli(tmp_path, "run", *overrides)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("imbsweep: error: ")
    for w in words:
        assert w in lines[0]
    db = tmp_path / "mlruns" / "mlflow.db"
    assert not db.exists() or not runs_of(tmp_path, "imbsweep")  # nothing recorded at all


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error(tmp_path: Path) -> None:
    p = run_cli(tmp_path, *RUN, "trainer.device=cuda")
    assert p.returncode == 2
    assert p.stderr.strip() == ("imbsweep: error: trainer.device='cuda': CUDA is not available "
                                "on this machine; use auto or cpu")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_ends_the_run_killed_and_keeps_its_metrics(workdir: Path, sig: int) -> None:
    experiment = f"interrupt-{int(sig)}"
    proc = subprocess.Popen([*CLI, *RUN, "trainer.epochs=100000", "tracking.flush_every_s=0",
                             f"tracking.experiment={experiment}"], cwd=workdir, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until epochs are being recorded
            runs = runs_of(workdir, experiment) if (workdir / "mlruns/mlflow.db").exists() else []
            if runs and "val/balanced_acc" in runs[0].data.metrics:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    (run,) = runs_of(workdir, experiment)
    assert run.info.status == "KILLED"
    assert run.data.tags["imbsweep.state"] == "killed"
    assert len(mlflow_client(workdir).get_metric_history(run.info.run_id, "train/loss")) >= 1
    assert run.info.run_name == f"{run.data.tags['imbsweep.trick']} killed"  # the trick, and how it ended
    assert run.data.tags["mlflow.note.content"] == "killed: interrupted (Ctrl-C)"
    assert {a.path for a in mlflow_client(workdir).list_artifacts(run.info.run_id)} == {"config.yaml"}


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback only
        return bytes(r.read())


def test_ui_serves_the_local_store_with_its_artifacts(workdir: Path) -> None:
    assert run_cli(workdir, *RUN, "trainer.epochs=1", "tracking.experiment=ui").returncode == 0
    (run,) = runs_of(workdir, "ui")
    port = free_port()
    proc = subprocess.Popen([*CLI, "ui", "--port", str(port), "--study", "ui"], cwd=workdir, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, body = time.monotonic() + 120, None
        while time.monotonic() < deadline and body is None:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                body = _get(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=ui")
            except OSError:
                time.sleep(1)
        assert body is not None, "the MLflow UI did not answer"
        exp_id = json.loads(body)["experiment"]["experiment_id"]
        assert exp_id == run.info.experiment_id
        listed = json.loads(_get(f"{base}/api/2.0/mlflow/artifacts/list?run_id={run.info.run_id}"))
        assert {f["path"] for f in listed["files"]} >= {"config.yaml", "per_class.csv"}
        csv = _get(f"{base}/get-artifact?path=per_class.csv&run_uuid={run.info.run_id}")
        assert csv.startswith(b"class,train_count")
        assert b"<html" in _get(f"{base}/").lower()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    # the first line is the link that opens the study on its runs
    link = f"{base}/#/experiments/{run.info.experiment_id}?workflowType=machine_learning"  # the runs, not GenAI
    assert out.splitlines()[0].startswith(f"MLflow UI: open {link} "), out


@pytest.mark.parametrize(("args", "words"), [
    (("--study", "nope"), "--study='nope': not in the MLflow store"),
    (("--workers", "0"), "--workers=0: must be an integer >= 1"),
    (("--port-in-use",), "--port={port}: cannot listen on 127.0.0.1:{port} (Address already in use)"),
])
def test_ui_refuses_what_it_cannot_open_in_one_line(workdir: Path, args: tuple[str, ...], words: str) -> None:
    if not (workdir / "mlruns" / "mlflow.db").exists():  # a store without that study
        assert run_cli(workdir, *RUN, "trainer.epochs=1").returncode == 0
    port = free_port()
    if args == ("--port-in-use",):
        with socket.create_server(("127.0.0.1", port)):
            p = run_cli(workdir, "ui", "--port", str(port))
        words = words.format(port=port)
    else:
        p = run_cli(workdir, "ui", "--port", str(port), *args)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and words in lines[0], p.stderr


