"""A SYNTHETIC study written straight through the MLflow client: no training happens.

Its runs look like a sweep's (same tags, the real flattened config as params, a real
``config.yaml`` and ``per_class.csv`` artifact, final metrics at the selected step), but the
metric values are drawn from a seeded random generator. Used by the tests of
``compare``/``export`` (a few dozen trials); ``bench/compare_scale.py`` (1000 trials) runs
the same generator from ``bench/_synthetic.py``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tests.helpers.configs import compose_config

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: trick label -> (loss group option, class-weight scheme, true mean test balanced accuracy)
TRICKS = {"ce": ("ce", "none", 0.70), "ce+w=inverse": ("ce", "inverse", 0.74),
          "focal": ("focal", "none", 0.71), "logit_adjusted": ("logit_adjusted", "none", 0.78),
          "balanced_softmax": ("balanced_softmax", "none", 0.77)}
CLASSES = 10
#: the study ``syn`` of the ``syn_store`` fixture (tests/conftest.py): its trials, and replicates of each trick's best
SYN_TRIALS, SYN_RESEEDS = 30, 3
#: a launch directory holding synthetic studies: (the directory, its MLflow tracking URI, what make_study returned)
SynStore = tuple[Path, str, dict[str, Any]]


def real_metric_keys() -> list[str]:
    """The final metrics a complete run of :data:`CLASSES` classes logs: the val and test
    evaluations (``imbsweep.metrics.evaluate``, with per-class recall and precision), the
    post-hoc summary and the fit's bookkeeping."""
    from imbsweep.metrics import HEADLINE, evaluate

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(CLASSES), size=10 * CLASSES)
    y = np.repeat(np.arange(CLASSES), 10)
    counts = np.round(1000 * 0.01 ** (np.arange(CLASSES) / (CLASSES - 1))).astype(int)
    keys = [k for split in ("val", "test")
            for k in evaluate(probs, y, counts, [str(c) for c in range(CLASSES)], split).metrics]
    keys += [f"{split}/{k}_posthoc" for split in ("val", "test") for k in HEADLINE]
    return [*keys, "posthoc/tau", "best_epoch", "epochs_run", "fit_time_s"]


def _base_config(loss: str, scheme: str, lr: float, batch: int, seed: int) -> dict[str, Any]:
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    weights = [] if scheme == "none" else [f"loss.class_weights={scheme}"]
    cfg = compose_config("data=digits_lt", "model=mlp", f"loss={loss}", *weights, f"optimizer.lr={lr}",
                         f"trainer.batch_size={batch}", f"trainer.seed={seed}", "trainer.epochs=3")
    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}


def _run(client: MlflowClient, exp_id: str, parent: str, study: str, trick: str, seed: int, value: float,
         rng: np.random.Generator, tags: dict[str, str], tmp: Path,
         cache: dict[tuple[str, str], dict[str, Any]]) -> str:
    from mlflow.entities import Metric, Param

    from imbsweep import _config

    loss, scheme, _ = TRICKS[trick]
    lr = float(np.round(10 ** rng.uniform(-3.5, -1.5), 6))
    batch = int(rng.choice([64, 128, 256]))
    key = (loss, scheme)
    if key not in cache:  # composing once per trick keeps 1000 runs fast; values are set below
        cache[key] = _base_config(loss, scheme, 0.001, 64, 0)
    config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in cache[key].items()}
    config["optimizer"] = {**config["optimizer"], "lr": lr}
    config["trainer"] = {**config["trainer"], "batch_size": batch, "seed": seed}
    choices = {"data": "digits_lt", "model": "mlp", "loss": loss, "resampling": "none",
               "optimizer": "adam", "scheduler": "cosine", "trainer": "default", "tracking": "local"}
    run = client.create_run(exp_id, tags={
        "mlflow.parentRunId": parent, "imbsweep.study": study, "imbsweep.trick": trick,
        **{f"imbsweep.choice.{g}": o for g, o in choices.items()}, **tags})
    run_id = run.info.run_id
    params = [Param(k, v) for k, v in _config.flatten(config) if not k.startswith("hydra.")]
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i:i + 100])
    if tags.get("imbsweep.state") == "complete":
        recall = np.clip(value + rng.normal(0, 0.1, CLASSES) - np.linspace(-0.1, 0.1, CLASSES), 0, 1)
        # every key a real run logs at its selected step (74 with 10 classes), so reading the
        # study back costs what reading a real one does; the ones compare uses are set below
        metrics = {k: float(rng.uniform(0, 1)) for k in real_metric_keys()}
        metrics.update({"val/balanced_acc": value, "test/balanced_acc": value + rng.normal(0, 0.01),
                        "val/ece": (ece := abs(rng.normal(0.1, 0.03))),
                        "test/ece": ece + abs(rng.normal(0, 0.01)), "test/acc_few": float(recall[-3:].mean()),
                        **{f"test/recall/{c}": float(r) for c, r in enumerate(recall)}})
        client.log_batch(run_id, metrics=[Metric(k, float(v), 0, 4) for k, v in metrics.items()])
        d = tmp / run_id
        d.mkdir()
        (d / "config.yaml").write_text(_config.to_yaml(config))
        counts = np.round(100 * 0.01 ** (np.arange(CLASSES) / (CLASSES - 1))).astype(int)
        (d / "per_class.csv").write_text("class,train_count,test_recall\n" + "".join(
            f"{c},{n},{r:.4f}\n" for c, n, r in zip(range(CLASSES), counts, recall, strict=True)))
        client.log_artifacts(run_id, str(d))
    elif tags.get("imbsweep.state") == "pruned":  # a pruned run keeps its last epoch's values
        last = {k: float(rng.uniform(0, 1)) for k in ["train/loss", "train/lr", *real_metric_keys()]
                if k.startswith(("train/", "val/")) and "/recall/" not in k and "/precision/" not in k
                and not k.endswith("_posthoc")}
        last["val/balanced_acc"] = value - 0.1  # stopped early: below where it would have ended
        client.log_batch(run_id, metrics=[Metric(k, v, 0, 2) for k, v in last.items()])
    status = {"complete": "FINISHED", "pruned": "FINISHED"}.get(tags.get("imbsweep.state", ""), "FAILED")
    client.set_terminated(run_id, status)
    return str(run_id)


def make_study(client: MlflowClient, study: str, n_trials: int, artifact_root: Path, reseeds: int = 0, seed: int = 0,
               tricks: Sequence[str] = tuple(TRICKS), arms: Mapping[str, str] | None = None,
               budgets: Mapping[str, int] | None = None, baseline: str | None = None,
               seed_sd: float = 0.02) -> dict[str, Any]:
    """A synthetic study of ``n_trials`` trials (about 10% pruned, 3% failed) over ``tricks``
    and ``reseeds`` replicate runs of each trick's best trial, its artifacts under
    ``artifact_root`` (MLflow's default would be ``./mlruns`` of the working directory);
    returns its ids.

    With ``arms`` (arm name -> trick label of :data:`TRICKS`) it is a tournament as the sweeper
    records one: every run tagged ``imbsweep.arm``, trial numbers counted within each arm,
    ``n_trials`` trials per arm (``budgets`` overrides some), the parent tagged
    ``imbsweep.baseline_arm`` with a ``sweep.yaml`` that declares the arms, and replicate k of
    every arm run with ``trainer.seed = k`` (tag ``imbsweep.replicate``), its value the arm's
    true mean plus a per-seed effect shared by all arms (sd ``seed_sd``) plus noise."""
    rng = np.random.default_rng(seed)
    exp_id = client.create_experiment(study, artifact_location=(artifact_root / study).as_uri())
    parent_tags = {"imbsweep.role": "parent", "imbsweep.study": study}
    if arms is not None:
        parent_tags["imbsweep.baseline_arm"] = baseline or next(iter(arms))
    parent = client.create_run(exp_id, run_name=f"{study} (study)", tags=parent_tags).info.run_id
    best: dict[str, tuple[float, str]] = {}
    cache: dict[tuple[str, str], dict[str, Any]] = {}
    if arms is None:
        plan = [(tricks[n % len(tricks)], tricks[n % len(tricks)], n) for n in range(n_trials)]
    else:
        per_arm = {a: (budgets or {}).get(a, n_trials) for a in arms}
        plan = [(a, arms[a], n) for n in range(max(per_arm.values())) for a in arms if n < per_arm[a]]
    with tempfile.TemporaryDirectory() as tmp:
        if arms is not None:
            import yaml

            (Path(tmp) / "sweep.yaml").write_text(yaml.safe_dump({
                "arms": {a: {"loss": TRICKS[t][0], "loss.class_weights": TRICKS[t][1]} for a, t in arms.items()},
                "trials_per_arm": n_trials, "baseline_arm": parent_tags["imbsweep.baseline_arm"], "n_jobs": 1}))
            client.log_artifact(parent, str(Path(tmp) / "sweep.yaml"))
        for key, trick, n in plan:
            u = rng.random()
            state = "pruned" if u < 0.10 else "failed" if u < 0.13 else "complete"
            value = float(np.clip(TRICKS[trick][2] + rng.normal(0, 0.03), 0, 1))
            tags = {"imbsweep.trial": str(n), "imbsweep.state": state}
            if arms is not None:
                tags["imbsweep.arm"] = key
            run_id = _run(client, exp_id, parent, study, trick, 0, value, rng, tags, Path(tmp), cache)
            if state == "complete" and value > best.get(key, (-1.0, ""))[0]:
                best[key] = (value, run_id)
        effect = rng.normal(0, seed_sd if arms is not None else 0.0, reseeds + 1)
        for key, (_, run_id) in best.items():
            trick = arms[key] if arms is not None else key
            trial = client.get_run(run_id).data.tags["imbsweep.trial"]
            for s in range(1, reseeds + 1):
                value = float(np.clip(TRICKS[trick][2] + effect[s] + rng.normal(0, 0.01), 0, 1))
                tags = {"imbsweep.role": "reseed", "imbsweep.reseed_of": run_id,
                        "imbsweep.reseed_of_trial": trial, "imbsweep.state": "complete"}
                if arms is not None:
                    tags.update({"imbsweep.arm": key, "imbsweep.replicate": str(s), "imbsweep.vary_split": "false"})
                _run(client, exp_id, parent, study, trick, s, value, rng, tags, Path(tmp), cache)
    client.set_terminated(parent, "FINISHED")
    return {"experiment_id": exp_id, "parent_run_id": parent, "best": best}
