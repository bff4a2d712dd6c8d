"""The stores a run or sweep wrote, read back independently: MLflow through ``MlflowClient``,
Optuna through its own storage classes; and the checks that the two agree."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from optuna.storages import JournalStorage

STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}  # Optuna's trial state -> imbsweep.state


def mlflow_db(workdir: Path) -> Path:
    """The local MLflow store (SQLite) of a launch directory."""
    return workdir / "mlruns" / "mlflow.db"


def journal_path(workdir: Path) -> Path:
    """The local Optuna storage (a journal file) of a launch directory."""
    return workdir / "mlruns" / "optuna" / "journal.log"


def mlflow_client(workdir: Path) -> MlflowClient:
    """A client on a workdir's local store, opened under the same lock as the product's
    (a reader that opens the file while a run is creating it would race the migration)."""
    from imbsweep._client import make_client

    return make_client(f"sqlite:///{mlflow_db(workdir)}")


def runs(workdir: Path, experiment: str) -> list[Run]:
    """Every run of ``experiment`` in the workdir's local store (none if it does not exist)."""
    client = mlflow_client(workdir)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else list(client.search_runs([exp.experiment_id], max_results=1000))


def _family(found: Sequence[Run]) -> tuple[Run, list[Run]]:
    (parent,) = [r for r in found if r.data.tags.get("imbsweep.role") == "parent"]
    return parent, [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def parent_and_children(workdir: Path, experiment: str) -> tuple[Run, list[Run]]:
    """A study's parent run and its children (trials and replicates), in the store's order."""
    return _family(runs(workdir, experiment))


def trial_runs(workdir: Path, experiment: str) -> tuple[Run, list[Run]]:
    """A plain study's parent run and its trial runs by trial number; every run of the
    experiment is one of them."""
    found = runs(workdir, experiment)
    parent, children = _family(found)
    assert len(children) + 1 == len(found)
    return parent, sorted(children, key=lambda r: int(r.data.tags["imbsweep.trial"]))


def journal_storage(journal: Path) -> JournalStorage:
    """Optuna's own reader of a journal file."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(journal)))


def journal_study(journal: Path, name: str) -> optuna.Study:
    """Study ``name`` of a journal file."""
    import optuna

    return optuna.load_study(study_name=name, storage=journal_storage(journal))


def local_storage(workdir: Path) -> JournalStorage:
    """A launch directory's local Optuna storage."""
    return journal_storage(journal_path(workdir))


def local_study(workdir: Path, name: str) -> optuna.Study:
    """Study ``name`` of a launch directory's local Optuna storage."""
    return journal_study(journal_path(workdir), name)


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards the study's budget: finished, and not re-queued."""
    return [t for t in study.trials if t.state.is_finished() and not t.user_attrs.get("imbsweep:requeued")]


def check_one_to_one(study: optuna.Study, children: Sequence[Run], skip: Collection[int] = ()) -> None:
    """Every finished trial (but ``skip``) has exactly one MLflow run among ``children``, which
    names it, in the same state, with the trial's params."""
    trials = {t.number: t for t in study.trials if t.state.is_finished() and t.number not in skip}
    assert [int(r.data.tags["imbsweep.trial"]) for r in children] == sorted(trials)
    for run in children:
        trial = trials[int(run.data.tags["imbsweep.trial"])]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.tags["imbsweep.state"] == STATES[trial.state.name]
        for key, value in trial.params.items():
            param = run.data.params[key]
            assert (float(param) == value) if isinstance(value, float) else param == str(value)

