"""The real CLI in a subprocess (and ``imbsweep.cli.main`` in-process): ``run``, ``ui``, and
``compare``/``export`` on the synthetic study ``syn``; what it wrote is read back with
``MlflowClient``."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from imbsweep._paths import PROJECT_ROOT
from imbsweep.compare import compare, to_csv
from imbsweep.results import load_study
from tests.helpers.cli import CLI, cli_env, popen_cli, run_cli
from tests.helpers.configs import TINY
from tests.helpers.procs import free_port, interrupt_when, start_server, stop_server, wait_for_http
from tests.helpers.stores import mlflow_client, mlflow_db, runs
from tests.helpers.synthetic import SynStore

RUN = ("run", *TINY)


def test_run_records_params_epochs_artifacts_and_tags(workdir: Path) -> None:
    p = run_cli(workdir, *RUN, "trainer.epochs=3", "tracking.experiment=record",
                "loss.class_weights=inverse", "loss.label_smoothing=0.1")
    assert p.returncode == 0, p.stderr
    (run,) = runs(workdir, "record")
    assert run.info.status == "FINISHED"
    assert run.info.run_id in p.stdout and "imbsweep ui" in p.stdout  # the summary
    params = run.data.params
    assert params["loss.name"] == "ce" and params["loss.class_weights"] == "inverse"
    assert params["loss.label_smoothing"] == "0.1" and params["trainer.epochs"] == "3"
    assert params["model.hidden_sizes"] == "[32]" and params["data._target_"].endswith("DigitsLT")
    tags = run.data.tags
    assert tags["imbsweep.trick"] == "ce+w=inverse" and tags["imbsweep.state"] == "complete"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert tags["mlflow.source.git.commit"] == head
    client = mlflow_client(workdir)
    history = client.get_metric_history(run.info.run_id, "val/balanced_acc")
    # the curve holds one point per epoch, nothing more; the selected epoch's value is val/selected/<name>
    assert [m.step for m in history] == [1, 2, 3]
    best = max(history, key=lambda m: (m.value, -m.step))
    (selected,) = client.get_metric_history(run.info.run_id, "val/selected/balanced_acc")
    assert (selected.step, selected.value) == (best.step, best.value)
    assert run.data.metrics["best_epoch"] == best.step
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test/balanced_acc")] == [best.step]
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 3
    assert "test/selected/balanced_acc" not in run.data.metrics  # measured once: no curve, no selected value
    # per-class values: the selected epoch's only (val/selected/…), unless tracking.epoch_per_class=true
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/selected/recall/9")] == [best.step]
    assert "val/recall/9" not in run.data.metrics
    # without float noise: 12 significant digits at most
    assert all(len(f"{v!r}".lstrip("-0.").replace(".", "").split("e")[0]) <= 12 for v in run.data.metrics.values())
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert names == {"config.yaml", "confusion_matrix.png", "per_class.csv", "posthoc.csv"}
    # the MLflow 3 UI opens a model-training experiment on its runs, not on the GenAI overview
    exp = client.get_experiment_by_name("record")
    assert exp is not None and exp.tags["mlflow.experimentKind"] == "custom_model_development"
    local = Path(client.download_artifacts(run.info.run_id, "", str(workdir / "dl")))
    cfg = yaml.safe_load((local / "config.yaml").read_text())
    assert cfg["loss"]["class_weights"] == "inverse" and cfg["trainer"]["epochs"] == 3
    table = pd.read_csv(local / "per_class.csv")
    assert table["train_count"].tolist() == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    assert table["test_support"].tolist() == [50] * 10
    assert table.loc[0, "test_recall"] == pytest.approx(run.data.metrics["test/recall/0"], abs=1e-6)
    with Image.open(local / "confusion_matrix.png") as png:
        assert png.format == "PNG" and min(png.size) > 300


def test_per_class_curves_on_request(workdir: Path) -> None:
    p = run_cli(workdir, *RUN, "trainer.epochs=2", "tracking.experiment=curves",
                "tracking.epoch_per_class=true")
    assert p.returncode == 0, p.stderr
    (run,) = runs(workdir, "curves")
    history = mlflow_client(workdir).get_metric_history(run.info.run_id, "val/precision/0")
    assert [m.step for m in history] == [1, 2]  # a curve of the epochs; the selected value is val/selected/…
    assert run.data.metrics["val/selected/precision/0"] in [m.value for m in history]


def test_same_config_and_seed_give_identical_metrics(workdir: Path) -> None:
    for _ in range(2):
        assert run_cli(workdir, *RUN, "tracking.experiment=determinism").returncode == 0
    a, b = (r.data.metrics for r in runs(workdir, "determinism"))
    a.pop("fit_time_s"), b.pop("fit_time_s")
    assert a == b


def test_credentials_never_reach_params(workdir: Path) -> None:
    p = run_cli(workdir, *RUN, "tracking.experiment=secrets", "trainer.epochs=1",
                "+extra.db_url=postgresql://bob:hunter2@db:5432/x", "+extra.api_token=abc123")
    assert p.returncode == 0, p.stderr
    (run,) = runs(workdir, "secrets")
    assert run.data.params["extra.db_url"] == "postgresql://bob:***@db:5432/x"
    assert run.data.params["extra.api_token"] == "***"
    client = mlflow_client(workdir)
    local = client.download_artifacts(run.info.run_id, "config.yaml", str(workdir / "dl2"))
    text = Path(local).read_text()
    assert "hunter2" not in text and "abc123" not in text


def test_nan_loss_ends_the_run_failed_with_its_reason(workdir: Path) -> None:
    p = run_cli(workdir, "run", "data=digits_lt", "model=logreg", "optimizer=sgd",
                "optimizer.lr=1e30", "scheduler=constant", "trainer.epochs=3",
                "tracking.experiment=nan")
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    assert "FAILED: train/loss is nan at epoch 1 (diverged)" in p.stderr
    (run,) = runs(workdir, "nan")
    assert run.info.status == "FAILED"
    assert run.data.tags["imbsweep.state"] == "failed"
    assert "train/loss is nan" in run.data.tags["imbsweep.failure_reason"]


def test_a_run_with_the_tricks_records_them_in_mlflow(workdir: Path) -> None:
    p = run_cli(workdir, "run", *TINY, "tracking.experiment=new_tricks", "stage2=crt", "stage2.epochs=3",
                "augment=remix", "model.max_norm=1.0")
    assert p.returncode == 0, p.stderr
    (run,) = runs(workdir, "new_tricks")
    params, metrics = run.data.params, run.data.metrics
    assert (params["stage2.name"], params["stage2.epochs"], params["stage2.lr"]) == ("crt", "3", "0.01")
    assert (params["augment.name"], params["augment.kappa"], params["augment.tau"]) == ("remix", "3.0", "0.5")
    assert params["model.max_norm"] == "1.0" and params["eval.taunorm_tau"] == "0.0"
    assert run.data.tags["imbsweep.trick"] == "ce+remix+maxnorm+crt"
    assert run.data.tags["imbsweep.choice.stage2"] == "crt" and run.data.tags["imbsweep.choice.augment"] == "remix"
    # stage 2's epochs are part of the record: the curves go on after the main run's 2 epochs
    client = mlflow_client(workdir)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/balanced_acc")] == [1, 2, 3, 4, 5]
    assert (metrics["stage1/epochs_run"], metrics["stage2/epochs_run"], metrics["epochs_run"]) == (2, 3, 5)
    assert 3 <= metrics["best_epoch"] <= 5 and "stage1/best_epoch" in metrics
    # the tau-norm scan, as every run reports it (the selected val value under val/selected)
    assert {"taunorm/tau", "test/balanced_acc_taunorm", "val/selected/balanced_acc_taunorm"} <= set(metrics)


def test_bad_trick_input_is_one_line_exit_2_and_no_run(tmp_path: Path) -> None:
    # every trick setting is checked in prepare, before the run exists (the messages: above)
    overrides, words = ["loss=ldam", "model.max_norm=2"], ["model.max_norm=2.0", "no effect with loss=ldam"]
    p = run_cli(tmp_path, "run", *TINY, *overrides)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("imbsweep: error: "), p.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert not mlflow_db(tmp_path).exists() or not runs(tmp_path, "imbsweep")


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
    assert not mlflow_db(tmp_path).exists() or not runs(tmp_path, "imbsweep")  # nothing recorded at all


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error(tmp_path: Path) -> None:
    p = run_cli(tmp_path, *RUN, "trainer.device=cuda")
    assert p.returncode == 2
    assert p.stderr.strip() == ("imbsweep: error: trainer.device='cuda': CUDA is not available "
                                "on this machine; use auto or cpu")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_ends_the_run_killed_and_keeps_its_metrics(workdir: Path, sig: int) -> None:
    experiment = f"interrupt-{int(sig)}"
    proc = popen_cli(workdir, *RUN, "trainer.epochs=100000", "tracking.flush_every_s=0",
                     f"tracking.experiment={experiment}", stdout=subprocess.PIPE)

    def recording() -> bool:  # epochs are being recorded
        found = runs(workdir, experiment) if mlflow_db(workdir).exists() else []
        return bool(found) and "val/balanced_acc" in found[0].data.metrics

    err = interrupt_when(proc, recording, sig, interval=0.5)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    (run,) = runs(workdir, experiment)
    assert run.info.status == "KILLED"
    assert run.data.tags["imbsweep.state"] == "killed"
    assert len(mlflow_client(workdir).get_metric_history(run.info.run_id, "train/loss")) >= 1
    assert run.info.run_name == f"{run.data.tags['imbsweep.trick']} killed"  # the trick, and how it ended
    assert run.data.tags["mlflow.note.content"] == "killed: interrupted (Ctrl-C)"
    assert {a.path for a in mlflow_client(workdir).list_artifacts(run.info.run_id)} == {"config.yaml"}


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback only
        return bytes(r.read())


def _descendants(pid: int) -> list[str]:
    """The command lines of every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            out.append((Path("/proc") / str(p) / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return out


def test_ui_serves_the_local_store_with_its_artifacts(workdir: Path) -> None:
    assert run_cli(workdir, *RUN, "trainer.epochs=1", "tracking.experiment=ui").returncode == 0
    (run,) = runs(workdir, "ui")
    port = free_port()
    proc = start_server([*CLI, "ui", "--port", str(port), "--study", "ui"], cwd=workdir, env=cli_env())
    base = f"http://127.0.0.1:{port}"
    try:
        body = wait_for_http(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=ui", proc, timeout=120,
                             request_timeout=10)
        exp_id = json.loads(body)["experiment"]["experiment_id"]
        assert exp_id == run.info.experiment_id
        listed = json.loads(_get(f"{base}/api/2.0/mlflow/artifacts/list?run_id={run.info.run_id}"))
        assert {f["path"] for f in listed["files"]} >= {"config.yaml", "per_class.csv"}
        csv = _get(f"{base}/get-artifact?path=per_class.csv&run_uuid={run.info.run_id}")
        assert csv.startswith(b"class,train_count")
        assert b"<html" in _get(f"{base}/").lower()
        # MLflow's job runner stays off: no huey consumers (7 processes, ~2 GB) for a local UI
        assert not [c for c in _descendants(proc.pid) if "huey" in c], _descendants(proc.pid)
    finally:
        out = stop_server(proc)
    # the first line is the link that opens the study on its runs
    link = f"{base}/#/experiments/{run.info.experiment_id}?workflowType=machine_learning"  # the runs, not GenAI
    assert out.splitlines()[0].startswith(f"MLflow UI: open {link} "), out


@pytest.mark.parametrize(("args", "words"), [
    (("--study", "nope"), "--study='nope': not in the MLflow store"),
    (("--workers", "0"), "--workers=0: must be an integer >= 1"),
    (("--port-in-use",), "--port={port}: cannot listen on 127.0.0.1:{port} (Address already in use)"),
])
def test_ui_refuses_what_it_cannot_open_in_one_line(workdir: Path, args: tuple[str, ...], words: str) -> None:
    if not mlflow_db(workdir).exists():  # a store without that study
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


# --- compare and export on the synthetic study ``syn`` ----------------------------------------

def test_compare_from_another_process_gives_the_same_table(syn_store: SynStore) -> None:
    work, uri, _ = syn_store
    here = to_csv(compare(load_study("syn", uri)))
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "imbsweep", "compare", "syn",
                        "--format", "csv", "--no-report"], cwd=work, env=cli_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout == here
    # a reader of the store never loads torch (a second of start-up for nothing)
    imported = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines()}
    assert "mlflow" in imported and "torch" not in imported


@pytest.mark.parametrize(("args", "message"), [
    (("compare", "nosuch"), "study 'nosuch': not in the MLflow store"),
    (("compare", "syn", "--metric", "val/nosuch"), "--metric='val/nosuch': never logged in study 'syn'"),
    (("compare", "syn", "--reseed", "0"), "--reseed=0: must be an integer >= 1"),
    (("export", "nosuch"), "known studies: syn"),
    (("export", "syn", "--top-k", "0"), "--top-k=0: must be an integer >= 1"),
    (("export", "syn", "--trick", "nosuch"), "--trick='nosuch': no complete trial of study 'syn' used it"),
    (("compare", "syn", "--baseline", "nosuch"),
     "--baseline='nosuch': not an arm of study 'syn'; arms: balanced_softmax, ce, ce+w=inverse, focal, logit_adjusted"),
    (("export", "syn", "--arm", "ce"), "--arm='ce': no complete trial of study 'syn' used it; arms: none"),
])
def test_bad_input_is_one_line_naming_the_value(syn_store: SynStore, args: tuple[str, ...], message: str,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from imbsweep.cli import main

    work, _, _ = syn_store
    monkeypatch.chdir(work)  # the CLI's own code in-process; the subprocess case is below
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_input_through_the_installed_command(syn_store: SynStore) -> None:
    work, _, _ = syn_store
    p = run_cli(work, "compare", "nosuch")
    assert p.returncode == 2 and p.stderr.startswith("imbsweep: error: study 'nosuch'")
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_unwritable_report_dir_and_out_are_clear_errors(syn_store: SynStore, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from imbsweep.cli import main

    work, _, _ = syn_store
    monkeypatch.chdir(work)
    (work / "a_file").write_text("")
    for args in (("compare", "syn", "--report-dir", "a_file"), ("export", "syn", "--out", "a_file/best")):
        assert main(list(args)) == 2
        err = capsys.readouterr().err
        assert "cannot write" in err and "a_file" in err and "Traceback" not in err, err


def test_a_study_without_finished_trials_and_an_empty_store_are_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from imbsweep.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["compare", "syn"]) == 2 and "no MLflow store" in capsys.readouterr().err
    client = mlflow_client(tmp_path)
    exp = client.create_experiment("fresh")
    client.create_run(exp, tags={"imbsweep.role": "parent", "imbsweep.study": "fresh"})
    client.create_run(exp, tags={"imbsweep.study": "fresh", "imbsweep.trial": "0", "imbsweep.state": "running"})
    for command in ("export", "compare"):
        assert main([command, "fresh"]) == 2
        assert "study 'fresh' has no finished trials yet" in capsys.readouterr().err
