"""Tournaments (``hydra.sweeper.arms``) through the real CLI: an exact, balanced budget per
arm, each arm its own Optuna study (sampler and pruner), read back from the Optuna storage
and from MLflow."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pytest
import yaml

from tests.helpers.cli import csv_by_arm, popen_cli, run_cli
from tests.helpers.procs import interrupt_when
from tests.helpers.stores import STATES, finished, journal_path, local_storage, mlflow_db, parent_and_children

if TYPE_CHECKING:
    from mlflow.entities import Run

ARMS = ("ce", "ce_weighted", "logit_adjusted")  # sweeps/smoke_arms.yaml


def _arm_studies(workdir: Path, name: str) -> dict[str, optuna.Study]:
    storage = local_storage(workdir)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith(name + "/")]
    return {n.split("/", 1)[1]: optuna.load_study(study_name=n, storage=storage) for n in names}


def _check_arm_runs(studies: dict[str, optuna.Study], children: list[Run],
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


@pytest.mark.slow  # (make test-all: make test keeps to its 15 minutes on 2 cores)
def test_every_arm_gets_exactly_its_budget_across_two_workers(tmp_path: Path) -> None:
    p = run_cli(tmp_path, "sweep", "smoke_arms", "hydra.sweeper.n_jobs=2")
    assert p.returncode == 0, p.stderr
    studies = _arm_studies(tmp_path, "smoke_arms")
    assert sorted(studies) == sorted(ARMS)
    for arm, study in studies.items():
        assert len(finished(study)) == 3, arm
        assert study.user_attrs["imbsweep:tournament"] == "smoke_arms" and study.user_attrs["imbsweep:arm"] == arm
        first = study.trials[0]
        assert first.user_attrs["imbsweep:baseline"] is True
        # the config's defaults for what the arm does not fix (smoke_arms sets batch_size 64)
        want = {"optimizer.lr": 0.005, "trainer.batch_size": 64}
        if arm == "logit_adjusted":
            want["loss.tau"] = 1.0
        assert first.params == want
        assert "loss" not in first.params  # fixed by the arm, never searched
    parent, children = parent_and_children(tmp_path, "smoke_arms")
    assert parent.info.status == "FINISHED" and parent.data.tags["imbsweep.baseline_arm"] == "ce"
    assert Counter(r.data.tags["imbsweep.arm"] for r in children) == {a: 3 for a in ARMS}
    _check_arm_runs(studies, children)
    fixed = {r.data.tags["imbsweep.arm"]: (r.data.params["loss.name"], r.data.params.get("loss.class_weights"))
             for r in children}
    assert fixed == {"ce": ("ce", "none"), "ce_weighted": ("ce", "inverse"), "logit_adjusted": ("logit_adjusted", None)}
    assert "per arm" in p.stdout and "ce (baseline)" in p.stdout
    (results,) = tmp_path.glob("multirun/*/*/optimization_results.yaml")
    saved = yaml.safe_load(results.read_text())
    assert set(saved["arms"]) == set(ARMS) and saved["arms"]["ce_weighted"]["fixed"] == {
        "loss": "ce", "loss.class_weights": "inverse"}
    for arm, study in studies.items():
        assert saved["arms"][arm]["best_value"] == study.best_value
    assert saved["best_value"] == max(s.best_value for s in studies.values())


@pytest.mark.slow  # (~26 s: make test-all; Ctrl-C mid-trial stays in make test through test_any_app and test_cli)
def test_an_interrupted_tournament_is_balanced_and_resumes_to_exactly_each_budget(tmp_path: Path) -> None:
    # 150 epochs: a trial's first half lasts longer than a poll of the three arms' studies (with 60,
    # once the sweep's per-trial cost fell, the poll often missed every trial's first half)
    epochs = 150
    args = ("sweep", "smoke_arms", f"trainer.epochs={epochs}")
    proc = popen_cli(tmp_path, *args)

    def four_done_one_running() -> bool:
        if not journal_path(tmp_path).exists():
            return False
        studies = _arm_studies(tmp_path, "smoke_arms")
        trials = [t for s in studies.values() for t in s.trials]
        # a trial in the first half of its epochs, so that Ctrl-C lands inside it, not after it ended
        return sum(t.state.name == "COMPLETE" for t in trials) >= 4 and any(
            t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs
            and len(t.intermediate_values) <= epochs // 2 for t in trials)

    err = interrupt_when(proc, four_done_one_running, signal.SIGINT, timeout=180)
    assert proc.returncode == 130 and "Traceback" not in err
    done = {arm: len(finished(s)) for arm, s in _arm_studies(tmp_path, "smoke_arms").items()}
    assert sum(done.values()) >= 4 and max(done.values()) - min(done.values()) <= 1, done  # balanced

    p = run_cli(tmp_path, *args)
    assert p.returncode == 0, p.stderr
    studies = _arm_studies(tmp_path, "smoke_arms")
    assert {arm: len(finished(s)) for arm, s in studies.items()} == {a: 3 for a in ARMS}
    assert not [t for s in studies.values() for t in s.trials if t.state.name in ("RUNNING", "WAITING")]
    requeued = {(arm, t.number) for arm, s in studies.items() for t in s.trials
                if t.user_attrs.get("imbsweep:requeued")}
    assert len(requeued) == 1  # the trial Ctrl-C cut, re-run under a new number
    parent, children = parent_and_children(tmp_path, "smoke_arms")
    assert parent.info.status == "FINISHED" and not [r for r in children if r.info.status == "RUNNING"]
    _check_arm_runs(studies, children, skip=requeued)


@pytest.mark.slow  # (make test-all: make test keeps to its 15 minutes on 2 cores)
def test_pruning_compares_a_trial_only_with_its_own_arm(tmp_path: Path) -> None:
    # Arm `frozen` learns nothing (lr 1e-7, nothing left to search): its trials are identical
    # and far below arm `ce` at every epoch. The median pruner (1 start-up trial, no warm-up)
    # prunes a trial below the median of earlier trials at the same epoch: against `ce`'s
    # trials every `frozen` trial would be pruned; against its own (equal) ones, none is.
    p = run_cli(tmp_path, "sweep", "smoke_arms", "hydra.sweeper.study_name=prune_arms", "trainer.epochs=4",
                "++hydra.sweeper.arms={frozen:{optimizer.lr:1e-7,trainer.batch_size:32}}",
                "~hydra.sweeper.arms.ce_weighted", "~hydra.sweeper.arms.logit_adjusted",
                "hydra.sweeper.trials_per_arm=4",
                "hydra.sweeper.pruner.name=median", "+hydra.sweeper.pruner.n_startup_trials=1",
                "+hydra.sweeper.pruner.n_warmup_steps=0")
    assert p.returncode == 0, p.stderr
    studies = _arm_studies(tmp_path, "prune_arms")
    assert sorted(studies) == ["ce", "frozen"]
    frozen, ce = studies["frozen"], studies["ce"]
    assert [t.state.name for t in frozen.trials] == ["COMPLETE"] * 4
    ce_done = [t for t in ce.trials if t.state.name == "COMPLETE"]
    assert ce_done
    for t in frozen.trials:  # what makes the test able to fail: frozen is far worse at every epoch
        for step, value in t.intermediate_values.items():
            assert all(value < c.intermediate_values[step] - 0.2 for c in ce_done)


@pytest.mark.parametrize(("overrides", "words"), [
    (("hydra.sweeper.n_trials=10",), ["hydra.sweeper.n_trials=10", "3 arms x trials_per_arm 3 = 9"]),
    (("hydra.sweeper.baseline_arm=nope",), ["hydra.sweeper.baseline_arm='nope'", "ce, ce_weighted, logit_adjusted"]),
    (("hydra.sweeper.trials_per_arm=0",), ["hydra.sweeper.trials_per_arm=0", ">= 1"]),
    (("++hydra.sweeper.arms={odd:{loss:hinge}}",), ["hydra.sweeper.arms.odd", "hinge"]),
    (("++hydra.sweeper.arms={odd:{optimizer.lr:'interval(1,0)'}}",), ["hydra.sweeper.arms.odd", "low < high"]),
    (("++hydra.sweeper.baseline={loss:ce}",), ["hydra.sweeper.baseline", "{} or null"]),
    (("loss.gamma=interval(1,2)",), ["hydra.sweeper.arms.ce='loss.gamma'", "does not have"]),
    (("++hydra.sweeper.conditional={loss.beta:{when:{los:ce},space:'choice(0.9,0.99)'}}",),
     ["hydra.sweeper.conditional.loss.beta.when='los'", "names no key"]),
])
def test_bad_tournament_settings_fail_before_any_trial(tmp_path: Path, overrides: tuple[str, ...],
                                                       words: list[str]) -> None:
    p = run_cli(tmp_path, "sweep", "smoke_arms", *overrides)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("imbsweep: error: "), p.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert not mlflow_db(tmp_path).exists()  # no run was recorded


@pytest.mark.parametrize(("override", "words"), [
    ("++hydra.sweeper.trials_per_arm=3", "hydra.sweeper.trials_per_arm=3: needs hydra.sweeper.arms"),
    ("++hydra.sweeper.posthoc_arms={ph:ce}", "hydra.sweeper.posthoc_arms={'ph': 'ce'}: needs hydra.sweeper.arms"),
])
def test_tournament_settings_without_arms_are_an_error(tmp_path: Path, override: str, words: str) -> None:
    p = run_cli(tmp_path, "sweep", "smoke", override)
    assert p.returncode == 2
    assert words in p.stderr


def _make_study(workdir: Path, name: str, **attrs: object) -> None:
    study = optuna.create_study(study_name=name, storage=local_storage(workdir), direction="maximize")
    for k, v in attrs.items():
        study.set_user_attr(k, v)


@pytest.mark.parametrize(("existing", "sweep", "words"), [
    ("mixed", "smoke_arms", "exists as a study without arms"),
    ("mixed/ce", "smoke", "is a tournament (mixed/ce)"),
])
def test_a_tournament_and_a_plain_study_never_share_a_name(tmp_path: Path, existing: str, sweep: str,
                                                           words: str) -> None:
    journal_path(tmp_path).parent.mkdir(parents=True)
    _make_study(tmp_path, existing)
    p = run_cli(tmp_path, "sweep", sweep, "hydra.sweeper.study_name=mixed")
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and words in lines[0] and "hydra.sweeper.study_name='mixed'" in lines[0]
    assert [s.study_name for s in optuna.get_all_study_summaries(local_storage(tmp_path))] == [existing]
    assert not mlflow_db(tmp_path).exists()


def test_a_posthoc_arm_never_takes_the_name_of_a_trained_arm_that_ran(tmp_path: Path) -> None:
    journal_path(tmp_path).parent.mkdir(parents=True)
    _make_study(tmp_path, "smoke_arms/ph", **{"imbsweep:arm_values": {"loss": "ce"}})
    p = run_cli(tmp_path, "sweep", "smoke_arms", "++hydra.sweeper.posthoc_arms={ph:ce}")
    assert p.returncode == 2, p.stderr
    assert "hydra.sweeper.posthoc_arms.ph='ce': study 'smoke_arms' already has a trained arm 'ph'" in p.stderr
    assert not mlflow_db(tmp_path).exists()


def test_an_arm_that_changed_is_refused_before_its_trials_mix(tmp_path: Path) -> None:
    journal_path(tmp_path).parent.mkdir(parents=True)
    _make_study(tmp_path, "smoke_arms/ce", **{"imbsweep:arm_values": {"loss": "focal"}})
    p = run_cli(tmp_path, "sweep", "smoke_arms")
    assert p.returncode == 2, p.stderr
    assert "hydra.sweeper.arms.ce={'loss': 'ce'}: this arm of study 'smoke_arms' already ran with " \
           "{'loss': 'focal'}" in p.stderr
    assert not local_storage(tmp_path).get_all_studies()[0].user_attrs.get("imbsweep:tournament")


def test_a_posthoc_arm_rescores_its_source_arms_models_without_training(tmp_path: Path) -> None:
    """``hydra.sweeper.posthoc_arms``: ce_posthoc trains nothing; it is CE's trials scored by
    their post-hoc values, in the sweep's summary, in compare (with CE's replicate runs read
    through their post-hoc values) and in export. ce_taunorm is the same after
    tau-normalisation (``{of: ce, by: taunorm}``), read through the runs' ``_taunorm`` values."""
    p = run_cli(tmp_path, "sweep", "smoke_arms", "hydra.sweeper.study_name=ph", "~hydra.sweeper.arms.ce_weighted",
                "++hydra.sweeper.posthoc_arms={ce_posthoc:ce,ce_taunorm:{of:ce,by:taunorm}}")
    assert p.returncode == 0, p.stderr
    studies = _arm_studies(tmp_path, "ph")
    assert sorted(studies) == ["ce", "logit_adjusted"]  # no study, no trial of its own
    assert all(s.metric_names == ["val/balanced_acc"] for s in studies.values())  # what the dashboard shows
    parent, children = parent_and_children(tmp_path, "ph")
    assert yaml.safe_load(parent.data.tags["imbsweep.posthoc_arms"]) == {"ce_posthoc": "ce", "ce_taunorm": "ce"}
    assert yaml.safe_load(parent.data.tags["imbsweep.posthoc_kinds"]) == {"ce_posthoc": "posthoc",
                                                                         "ce_taunorm": "taunorm"}
    assert len(children) == 6 and {r.data.tags["imbsweep.arm"] for r in children} == {"ce", "logit_adjusted"}
    runs = {r.info.run_id: r for r in children}
    ce_done = [t for t in studies["ce"].trials if t.state.name == "COMPLETE"]
    assert ce_done
    for t in ce_done:  # the value the post-hoc arm ranks on is the run's own post-hoc metric
        run = runs[t.user_attrs["mlflow_run_id"]]
        twin = run.data.metrics["val/selected/balanced_acc_posthoc"]
        assert t.user_attrs["imbsweep:posthoc_value"] == pytest.approx(twin)
        assert t.user_attrs["imbsweep:taunorm_value"] == pytest.approx(
            run.data.metrics["val/selected/balanced_acc_taunorm"])
    for t in studies["logit_adjusted"].trials:
        assert "imbsweep:posthoc_value" not in t.user_attrs and "imbsweep:taunorm_value" not in t.user_attrs
    tn_best = max(ce_done, key=lambda t: (t.user_attrs["imbsweep:taunorm_value"], -t.number))
    tn_line = next(ln for ln in p.stdout.splitlines() if ln.startswith("│ ce_taunorm"))
    assert f"{tn_best.user_attrs['imbsweep:taunorm_value']:.4f}" in tn_line
    assert "after tau-normalisation" in " ".join(p.stdout.split())
    best = max(ce_done, key=lambda t: (t.user_attrs["imbsweep:posthoc_value"], -t.number))
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("│ ce_posthoc"))
    assert "post-hoc on ce's models" in p.stdout and f"{best.user_attrs['imbsweep:posthoc_value']:.4f}" in line
    assert "imbsweep compare ph --reseed 5" in " ".join(p.stdout.split())
    results = yaml.safe_load(next(tmp_path.glob("multirun/**/optimization_results.yaml")).read_text())
    assert results["arms"]["ce_posthoc"]["posthoc_of"] == "ce"
    assert results["arms"]["ce_posthoc"]["best_trial"] == best.number
    assert results["arms"]["ce_taunorm"]["posthoc_by"] == "taunorm"
    assert results["arms"]["ce_taunorm"]["best_trial"] == tn_best.number

    c = run_cli(tmp_path, "compare", "ph", "--reseed", "2", "--jobs", "1", "--format", "csv", "--no-report")
    assert c.returncode == 0, c.stderr
    rows = csv_by_arm(c.stdout)
    assert sorted(rows) == ["ce", "ce_posthoc", "ce_taunorm", "logit_adjusted"]
    assert rows["ce_posthoc"]["trials"] == rows["ce"]["trials"] == "3"
    assert float(rows["ce_posthoc"]["best_val"]) == pytest.approx(best.user_attrs["imbsweep:posthoc_value"])
    assert rows["ce_posthoc"]["run_id"] == best.user_attrs["mlflow_run_id"]
    _, children = parent_and_children(tmp_path, "ph")
    reseeds = [r for r in children if r.data.tags.get("imbsweep.role") == "reseed"]
    # one set of replicates per distinct best run: a post-hoc arm whose best is CE's best trains nothing more
    best_runs = {rows[a]["run_id"] for a in rows}
    assert len(reseeds) == 2 * len(best_runs)
    mine = sorted((int(r.data.tags["imbsweep.replicate"]), r) for r in reseeds
                  if r.data.tags["imbsweep.reseed_of"] == rows["ce_posthoc"]["run_id"])
    assert [float(v) for v in rows["ce_posthoc"]["seed_values"].split()] == pytest.approx(
        [r.data.metrics["test/balanced_acc_posthoc"] for _, r in mine])
    ce_mine = sorted((int(r.data.tags["imbsweep.replicate"]), r) for r in reseeds
                     if r.data.tags["imbsweep.reseed_of"] == rows["ce"]["run_id"])
    assert [float(v) for v in rows["ce"]["seed_values"].split()] == pytest.approx(
        [r.data.metrics["test/balanced_acc"] for _, r in ce_mine])
    assert float(rows["ce_taunorm"]["best_val"]) == pytest.approx(tn_best.user_attrs["imbsweep:taunorm_value"])
    tn_mine = sorted((int(r.data.tags["imbsweep.replicate"]), r) for r in reseeds
                     if r.data.tags["imbsweep.reseed_of"] == rows["ce_taunorm"]["run_id"])
    assert [float(v) for v in rows["ce_taunorm"]["seed_values"].split()] == pytest.approx(
        [r.data.metrics["test/balanced_acc_taunorm"] for _, r in tn_mine])
    assert "τ-norm τ" in rows["ce_taunorm"]["config"]
    table = run_cli(tmp_path, "compare", "ph", "--no-report")
    assert "ce_posthoc trains nothing of its own" in " ".join(table.stdout.split()), table.stdout

    e = run_cli(tmp_path, "export", "ph", "--arm", "ce_posthoc", "--out", "best")
    assert e.returncode == 0, e.stderr
    text = (tmp_path / "best" / "ph.yaml").read_text()
    assert f"val/balanced_acc_posthoc = {best.user_attrs['imbsweep:posthoc_value']:.6g}" in text
    assert "post-hoc logit adjustment on this config's model" in text
    e = run_cli(tmp_path, "export", "ph", "--arm", "ce_taunorm", "--out", "best_tn")
    assert e.returncode == 0, e.stderr
    text = (tmp_path / "best_tn" / "ph.yaml").read_text()
    assert f"val/balanced_acc_taunorm = {tn_best.user_attrs['imbsweep:taunorm_value']:.6g}" in text
    assert "tau-normalisation on this config's model" in text


@pytest.mark.parametrize(("overrides", "words"), [
    (("++hydra.sweeper.posthoc_arms={ph:nope}",), ["hydra.sweeper.posthoc_arms.ph='nope'", "ce, ce_weighted"]),
    (("++hydra.sweeper.posthoc_arms={ce:ce}",), ["hydra.sweeper.posthoc_arms.ce='ce'", "not one of"]),
    (("++hydra.sweeper.posthoc_arms={ph:{of:ce,by:magic}}",),
     ["hydra.sweeper.posthoc_arms.ph={'of': 'ce', 'by': 'magic'}", "by: <one of posthoc, taunorm>"]),
    (("++hydra.sweeper.posthoc_arms={ph:ce}", "objective.metric=val/ece", "objective.direction=minimize"),
     ["hydra.sweeper.posthoc_arms", "val/ece", "balanced_acc"]),
])
def test_bad_posthoc_arms_fail_before_any_trial(tmp_path: Path, overrides: tuple[str, ...], words: list[str]) -> None:
    p = run_cli(tmp_path, "sweep", "smoke_arms", *overrides)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("imbsweep: error: "), p.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert not mlflow_db(tmp_path).exists()


def test_a_reproducible_tournament_gives_the_same_trials_on_two_workers_or_resumed_on_one(tmp_path: Path) -> None:
    """``hydra.sweeper.reproducible``: each arm runs one trial at a time, each asked of a
    sampler seeded by its number, so two workers (whose timing decides who asks when) and one
    worker stopped after two trials per arm and resumed by a new process find the same: the
    same parameters and values, trial by trial, TPE steering from the second trial on."""
    found = []
    for name, runs in (("two", [("2", "2")]), ("resumed", [("1", "1"), ("1", "2")])):
        work = tmp_path / name
        work.mkdir()
        for jobs, per_arm in runs:
            p = run_cli(work, "sweep", "smoke_arms", f"hydra.sweeper.n_jobs={jobs}", "hydra.sweeper.reproducible=true",
                        "~hydra.sweeper.arms.ce_weighted",
                        f"hydra.sweeper.trials_per_arm={per_arm}", "hydra.sweeper.sampler.n_startup_trials=1",
                        "trainer.num_threads=1")  # (torch threads otherwise follow n_jobs)
            assert p.returncode == 0, p.stderr
        studies = _arm_studies(work, "smoke_arms")
        found.append({arm: [(t.number, t.params, t.values) for t in s.trials] for arm, s in studies.items()})
        assert all(len(finished(s)) == 2 for s in studies.values())
    assert found[0] == found[1]
    for trials in found[0].values():  # each trial drew parameters of its own
        assert len({str(sorted(t[1].items())) for t in trials}) == 2
