"""The real stores read back as a user's tools read them: MLflow through ``MlflowClient``,
Optuna through its journal file."""

from __future__ import annotations

import socket
from collections.abc import Collection
from pathlib import Path
from typing import Any

import optuna

PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"  # .ci/run starts it (trust auth)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mlflow_client(workdir: Path) -> Any:
    """A client on a workdir's local store, opened under the same lock as the product's
    (a reader that opens the file while a run is creating it would race the migration)."""
    from imbsweep._client import make_client

    return make_client(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")


def runs_of(workdir: Path, experiment: str) -> list[Any]:
    """Every run of an experiment of a launch directory's local store (none: no such experiment)."""
    client = mlflow_client(workdir)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else list(client.search_runs([exp.experiment_id]))


def journal_of(workdir: Path) -> Path:
    """The default Optuna journal of a launch directory."""
    return workdir / "mlruns" / "optuna" / "journal.log"


def journal_storage(journal: Path) -> optuna.storages.BaseStorage:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(journal)))


def journal_study(journal: Path, name: str) -> optuna.Study:
    """Study ``name`` of a journal file."""
    return optuna.load_study(study_name=name, storage=journal_storage(journal))


def local_study(workdir: Path, name: str) -> optuna.Study:
    """Study ``name`` of a launch directory's default journal."""
    return journal_study(journal_of(workdir), name)


def arm_studies(workdir: Path, name: str) -> dict[str, optuna.Study]:
    """A tournament's arms' studies (``<name>/<arm>``), by arm."""
    storage = journal_storage(journal_of(workdir))
    names = [s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith(name + "/")]
    return {n.split("/", 1)[1]: optuna.load_study(study_name=n, storage=storage) for n in names}


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards the budget (re-queued failures aside)."""
    return [t for t in study.trials if t.state.is_finished() and not t.user_attrs.get("imbsweep:requeued")]


def study_runs(workdir: Path, experiment: str, only: bool = True) -> tuple[Any, list[Any]]:
    """The study's parent run and its children; ``only``: the experiment holds nothing else,
    and the children (trial runs all) come sorted by arm and trial number."""
    client = mlflow_client(workdir)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("imbsweep.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    if not only:  # reseed runs too: as MLflow lists them
        return parent, children
    assert len(children) + 1 == len(runs)
    return parent, sorted(children, key=lambda r: (r.data.tags.get("imbsweep.arm", ""),
                                                   int(r.data.tags["imbsweep.trial"])))


STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}  # Optuna's state -> imbsweep.state


def check_one_to_one(study: optuna.Study, children: list[Any], skip: tuple[int, ...] = ()) -> None:
    """Every finished trial (but ``skip``) has exactly one MLflow run, in the same state and
    with its params."""
    trials = {t.number: t for t in study.trials if t.state.is_finished() and t.number not in skip}
    assert [int(r.data.tags["imbsweep.trial"]) for r in children] == sorted(trials)
    for run in children:
        trial = trials[int(run.data.tags["imbsweep.trial"])]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.tags["imbsweep.state"] == STATES[trial.state.name]
        for key, value in trial.params.items():
            param = run.data.params[key]
            assert (float(param) == value) if isinstance(value, float) else param == str(value)


def check_arm_runs(studies: dict[str, optuna.Study], children: list[Any],
                   skip: Collection[tuple[str, int]] = ()) -> None:
    """Every finished trial of every arm has exactly one MLflow run, tagged with its arm and
    in the same state."""
    by_key = {(r.data.tags["imbsweep.arm"], int(r.data.tags["imbsweep.trial"])): r for r in children
              if (r.data.tags["imbsweep.arm"], int(r.data.tags["imbsweep.trial"])) not in skip}
    want = {(arm, t.number): t for arm, s in studies.items() for t in s.trials
            if t.state.is_finished() and (arm, t.number) not in skip}
    assert sorted(by_key) == sorted(want)
    for key, run in by_key.items():
        trial = want[key]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert trial.user_attrs["imbsweep:arm"] == key[0]
        assert run.data.tags["imbsweep.state"] == STATES[trial.state.name]
