"""The Hydra application: ``imbsweep run [overrides]`` (or ``python -m imbsweep.app``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ._paths import CONFIG_MODULE
from .errors import TrainingFailed


def run(cfg: DictConfig, progress: bool = True) -> float | list[float] | None:
    """Train once as ``cfg`` says, recorded in MLflow; return the objective value.

    Everything is built and checked before the MLflow run is created, so bad input leaves
    no run behind; once the run exists it always ends FINISHED, FAILED or KILLED.
    """
    from .reporting import CompositeReporter, ProgressReporter, Reporter
    from .training import fit, prepare

    setup = prepare(cfg)
    from .tracking import MlflowRun  # imports mlflow: only once the input is known to be good
    bar = ProgressReporter(f"{cfg.model._target_.rsplit('.', 1)[-1]} on {setup.dataset.name}")
    with MlflowRun(cfg) as recorder:
        reporters: list[Reporter] = [recorder, bar] if progress else [recorder]
        try:
            result = fit(cfg, CompositeReporter(reporters), setup)
        finally:
            bar.close()
    print_summary(recorder, result, cfg)
    if result.state == "failed":
        raise TrainingFailed(f"run {recorder.run_id} FAILED: {result.reason}")
    return result.objective


def print_summary(recorder: object, result: object, cfg: DictConfig) -> None:
    from .records import Result
    from .tracking import MlflowRun

    assert isinstance(recorder, MlflowRun) and isinstance(result, Result)
    m = result.metrics
    state = "FAILED" if result.state == "failed" else "FINISHED"
    print(f"run {recorder.run_id} {state}"
          + (f": best epoch {result.best_epoch}/{result.epochs_run}, "
             f"{m['fit_time_s']:.1f} s" if result.state == "complete" else f": {result.reason}"))
    if result.state == "complete":
        keys = [cfg.objective.metric, "test/balanced_acc", "test/acc", "test/macro_f1",
                "test/worst_class_recall", "test/acc_many", "test/acc_medium", "test/acc_few",
                "test/ece"]
        shown = dict.fromkeys(k for k in keys if k in m)
        print("  " + "   ".join(f"{k} {m[k]:.4f}" for k in shown))
    print(f"  MLflow store {recorder.uri}, experiment id {recorder.experiment_id}")
    from ._client import ui_link

    print("  open it: imbsweep ui  ->  "
          + ui_link("http://127.0.0.1:5000", f"experiments/{recorder.experiment_id}/runs/{recorder.run_id}"))


def task(cfg: DictConfig) -> float | list[float] | None:
    """The app's task function; returns the objective (or objectives) for sweepers (the
    imbsweep sweeper runs its trials with ``sweep.run_trial`` instead: per-epoch pruning and
    the full MLflow record)."""
    return run(cfg)


task.imbsweep_app = True  # type: ignore[attr-defined]  # what the sweeper recognises as imbsweep's app
# the configs the package ships; the user's ./conf/ and ./sweeps/ come ahead of them in the search path
# (hydra_plugins/imbsweep_searchpath), Hydra's --config-dir after them
main = hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name="config")(task)


if __name__ == "__main__":
    main()
