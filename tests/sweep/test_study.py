"""Samplers and pruners by name, with their keyword arguments."""

from __future__ import annotations

import logging

import optuna
import pytest

from imbsweep.errors import ConfigError
from imbsweep.sweep import PRUNERS, SAMPLERS, SearchSpace, make_pruner, make_sampler
from imbsweep.sweep._study import grid_size

SPACE = SearchSpace.build({"optimizer.lr": "choice(0.01, 0.1)", "trainer.batch_size": "range(32, 97, 32)"}, None)
EXPECTED_SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "gp": "GPSampler", "cmaes": "CmaEsSampler",
                     "qmc": "QMCSampler", "nsgaii": "NSGAIISampler", "grid": "GridSampler"}
EXPECTED_PRUNERS = {"none": "NopPruner", "median": "MedianPruner", "percentile": "PercentilePruner",
                    "successive_halving": "SuccessiveHalvingPruner", "hyperband": "HyperbandPruner",
                    "wilcoxon": "WilcoxonPruner"}


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_by_name(name: str) -> None:
    assert isinstance(make_sampler({"name": name, "seed": 0}, SPACE), getattr(optuna.samplers, EXPECTED_SAMPLERS[name]))


def test_grid_sampler_covers_the_grid_and_tell_works_past_its_end() -> None:
    sampler = make_sampler({"name": "grid", "seed": 0}, SPACE)
    study = optuna.create_study(sampler=sampler)
    seen = set()
    for _ in range(7):  # one past the grid: Optuna's own sampler would raise in tell() here
        t = study.ask()
        seen.add(tuple(SPACE.sample(t).values()))
        study.tell(t, 0.0)
    assert seen == {(lr, b) for lr in (0.01, 0.1) for b in (32, 64, 96)}
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert grid_size(SPACE) == 6


@pytest.mark.parametrize("name", PRUNERS)
def test_every_pruner_by_name(name: str) -> None:
    assert type(make_pruner({"name": name})).__name__ == EXPECTED_PRUNERS[name]


def test_pruner_arguments_reach_the_pruner() -> None:
    pruner = make_pruner({"name": "percentile", "percentile": 25.0, "n_startup_trials": 2})
    assert isinstance(pruner, optuna.pruners.PercentilePruner)
    assert pruner._percentile == 25.0 and pruner._n_startup_trials == 2


def test_keys_of_another_sampler_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        sampler = make_sampler({"name": "random", "seed": 3, "multivariate": True}, SPACE)
    assert isinstance(sampler, optuna.samplers.RandomSampler)
    assert "sampler random ignores multivariate" in caplog.text


def test_a_key_no_sampler_takes_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"hydra.sweeper.sampler.n_startup_trail=3: not an argument of TPESampler"):
        make_sampler({"name": "tpe", "n_startup_trail": 3}, SPACE)


def test_grid_refuses_intervals_and_conditionals() -> None:
    with pytest.raises(ConfigError, match="needs choice"):
        make_sampler({"name": "grid"}, SearchSpace.build({"x": "interval(0, 1)"}, None))
    cond = SearchSpace.build({"a": "choice(p, q)"}, {"b": {"when": {"a": "q"}, "space": "choice(1, 2)"}})
    with pytest.raises(ConfigError, match="conditional"):
        make_sampler({"name": "grid"}, cond)


def test_importances_are_computed_only_over_the_parameters_every_trial_has() -> None:
    # loss.max_m exists only where loss=ldam: fANOVA over it would rank a knob that most
    # trials never had (the parent run's param_importances.png once put it first)
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.importance import get_param_importances

    from imbsweep.sweep._mlflow import common_params

    study = optuna.create_study(direction="maximize")
    lr, loss, m = (FloatDistribution(1e-4, 1e-1, log=True), CategoricalDistribution(["ce", "ldam"]),
                   FloatDistribution(0.1, 0.8))
    for i in range(12):
        params: dict[str, object] = {"optimizer.lr": 10 ** (-4 + i / 4), "loss": "ldam" if i % 3 else "ce"}
        dists = {"optimizer.lr": lr, "loss": loss}
        if params["loss"] == "ldam":
            params["loss.max_m"], dists["loss.max_m"] = 0.1 + i / 20, m
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(i)))
    assert common_params(study.trials) == ["loss", "optimizer.lr"]
    assert set(get_param_importances(study, params=common_params(study.trials))) == {"loss", "optimizer.lr"}
    assert common_params([]) == []
