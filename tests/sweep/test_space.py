"""Search-space expressions: the official Hydra Optuna sweeper's syntax, with Hydra's own
semantics (range's stop is exclusive), and conditional parameters."""

from __future__ import annotations

from collections import Counter

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from imbsweep.errors import ConfigError
from imbsweep.sweep import SearchSpace, parse

# The expressions of the official plugin's README and example config, and what they mean.
EXAMPLES = [
    ("choice(-5, 0, 5)", CategoricalDistribution((-5, 0, 5))),
    ("choice(adam, sgd)", CategoricalDistribution(("adam", "sgd"))),
    ("range(1, 5)", IntDistribution(1, 4)),  # stop exclusive: never 5
    ("range(-5.5, 5.5, step=0.5)", FloatDistribution(-5.5, 5.0, step=0.5)),
    ("range(0, 10, 3)", IntDistribution(0, 9, step=3)),
    ("interval(0, 1)", FloatDistribution(0.0, 1.0)),
    ("int(interval(1, 10))", IntDistribution(1, 10)),
    ("tag(log, interval(1e-4, 1e-1))", FloatDistribution(1e-4, 1e-1, log=True)),
    ("tag(log, int(interval(8, 512)))", IntDistribution(8, 512, log=True)),
    ("shuffle(range(1, 4))", CategoricalDistribution((1, 2, 3))),
]


@pytest.mark.parametrize(("expression", "expected"), EXAMPLES, ids=[e for e, _ in EXAMPLES])
def test_official_expressions_map_to_optuna_distributions(expression: str, expected: object) -> None:
    got = parse("x", expression)
    if isinstance(expected, CategoricalDistribution) and "shuffle" in expression:
        assert isinstance(got, CategoricalDistribution)
        assert Counter(got.choices) == Counter(expected.choices)  # the same choices, in any order
    else:
        assert got == expected


def test_range_never_samples_its_stop() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    dist = parse("x", "range(1, 5)")
    seen = {study.ask({"x": dist}).params["x"] for _ in range(200)}
    assert seen == {1, 2, 3, 4}


def test_fixed_values_pass_through() -> None:
    assert parse("x", "3") == 3
    assert parse("x", 0.5) == 0.5
    assert parse("x", "adam") == "adam"


@pytest.mark.parametrize(("expression", "message"), [
    ("choice(", "cannot parse"),
    ("range(5, 5)", "an empty range"),
    ("interval(1, 0)", "low < high"),
    ("tag(log, interval(0, 1))", "low > 0"),
])
def test_malformed_expressions_are_one_line_errors(expression: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"hydra.sweeper.params.lr=") as info:
        parse("lr", expression)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_command_line_overrides_add_params_and_pass_fixed_values_through() -> None:
    space = SearchSpace.build({"optimizer.lr": "interval(0.001, 0.1)", "trainer.batch_size": "choice(64, 128)"},
                              None, ["trainer.batch_size=32", "model=mlp", "+extra.x=1",
                                     "loss.label_smoothing=choice(0.0, 0.1)"])
    assert set(space.params) == {"optimizer.lr", "loss.label_smoothing"}  # 32 fixes batch size
    assert space.passthrough == ["trainer.batch_size=32", "model=mlp", "+extra.x=1"]


def test_conditional_parameters_are_sampled_only_when_their_condition_holds() -> None:
    space = SearchSpace.build(
        {"loss": "choice(ce, focal)", "loss.class_weights": "choice(none, effective_number)"},
        {"loss.gamma": {"when": {"loss": "focal"}, "space": "interval(0.5, 5.0)"},
         "loss.beta": {"when": {"loss.class_weights": ["effective_number"]},
                       "space": "choice(0.99, 0.999)"}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen: Counter[str] = Counter()
    for _ in range(100):
        trial = study.ask()
        values = space.sample(trial)
        assert ("loss.gamma" in values) == (values["loss"] == "focal")
        assert ("loss.beta" in values) == (values["loss.class_weights"] == "effective_number")
        assert set(trial.params) == set(values)
        seen.update(k for k in values)
        study.tell(trial, 0.0)
    assert 20 < seen["loss.gamma"] < 80 and 20 < seen["loss.beta"] < 80  # both branches taken


def test_the_sweep_files_conditions_work_as_composed_config() -> None:
    """From YAML a list of allowed values is a ListConfig, not a list."""
    from omegaconf import OmegaConf

    from imbsweep._paths import PACKAGE_CONF

    sweeper = OmegaConf.load(PACKAGE_CONF / "sweep" / "tricks_joint.yaml").hydra.sweeper
    space = SearchSpace.build(sweeper.params, sweeper.conditional)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    by_loss: dict[str, set[str]] = {}
    for _ in range(200):
        trial = study.ask()
        values = space.sample(trial)
        by_loss.setdefault(values["loss"], set()).update(values)
        study.tell(trial, 0.0)
    assert {"loss.gamma", "loss.class_weights"} <= by_loss["focal"]
    assert "loss.label_smoothing" not in by_loss["focal"]  # focal's form has none
    assert {"loss.label_smoothing", "loss.class_weights", "loss.reweight_from_fraction",
            "eval.posthoc_tau"} <= by_loss["ce"]
    assert {"loss.max_m", "loss.s", "loss.class_weights"} <= by_loss["ldam"]
    assert {"loss.beta", "loss.gamma"} <= by_loss["class_balanced"]
    assert "loss.tau" in by_loss["logit_adjusted"] and "loss.tau" not in by_loss["balanced_softmax"]


def test_a_condition_may_name_an_earlier_conditional_parameter() -> None:
    space = SearchSpace.build(
        {"loss": "choice(ce, balanced_softmax)"},
        {"loss.class_weights": {"when": {"loss": "ce"}, "space": "choice(none, inverse)"},
         "loss.reweight_from_epoch": {"when": {"loss.class_weights": "inverse"}, "space": "choice(1, 30)"}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: Counter[str] = Counter()
    for _ in range(100):
        trial = study.ask()
        values = space.sample(trial)
        assert ("loss.reweight_from_epoch" in values) == (values.get("loss.class_weights") == "inverse")
        seen.update(str(values.get("loss.reweight_from_epoch", "-")) for _ in [0])
        study.tell(trial, 0.0)
    assert seen["1"] > 5 and seen["30"] > 5 and seen["-"] > 40
    # a later condition on an unknown name is still an error
    with pytest.raises(ConfigError, match="conditional.loss.beta.when"):
        SearchSpace.build({"loss": "choice(ce)"}, {"loss.beta": {"when": {"loss.scheme": "x"},
                                                                "space": "choice(0.9)"}})


def test_conditions_must_name_known_parameters() -> None:
    with pytest.raises(ConfigError, match="hydra.sweeper.conditional.loss.gamma.when"):
        SearchSpace.build({}, {"loss.gamma": {"when": {"loss": "focal"}, "space": "interval(0.5, 5)"}})


@pytest.mark.parametrize("value", ["x y", "a,b", "it's", "1", "true", "null", "[x]", "back\\slash",
                                   "ce", 0.001, 1e-7, 3, True, None, "'q'"])
def test_overrides_read_back_as_the_same_value(value: object) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    (text,) = SearchSpace().overrides({"a": value})
    assert OverridesParser.create().parse_override(text).value() == value


COND = {"loss.class_weights": {"when": {"loss": ["ce", "focal"]}, "space": "choice(none, inverse)"},
        "loss.reweight_from_fraction": {"when": {"loss.class_weights": ["inverse"]}, "space": "interval(0.5, 0.9)"}}


def test_a_search_expression_on_the_command_line_replaces_a_conditional_space() -> None:
    space = SearchSpace.build({"loss": "choice(ce, focal)"}, COND, ["loss.reweight_from_fraction=interval(0.6,0.7)"])
    cond = space.conditional["loss.reweight_from_fraction"]
    assert isinstance(cond.distribution, FloatDistribution)
    assert (cond.distribution.low, cond.distribution.high) == (0.6, 0.7)  # the command line's
    assert cond.when == {"loss.class_weights": ("inverse",)}  # the file's condition kept


def test_a_value_on_the_command_line_fixes_a_conditional_key_where_its_condition_holds() -> None:
    space = SearchSpace.build({"loss": "choice(ce, balanced_softmax)"}, COND, ["loss.class_weights=inverse"])
    assert "loss.class_weights=inverse" not in space.passthrough  # not sent to balanced_softmax trials
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: Counter[str] = Counter()
    for _ in range(30):
        values = space.sample(study.ask())
        seen[values["loss"]] += 1
        if values["loss"] == "ce":
            assert values["loss.class_weights"] == "inverse" and "loss.reweight_from_fraction" in values
        else:
            assert set(values) == {"loss"}
    assert seen["ce"] > 5 and seen["balanced_softmax"] > 5


def test_what_an_arm_fixes_or_searches_applies_to_it_unconditionally() -> None:
    arm = SearchSpace.build({}, COND, [], config_values={"loss": "logit_adjusted"},
                            arm_overrides=["loss.class_weights=choice(none, inverse)"])
    assert "loss.class_weights" in arm.params and "loss.class_weights" not in arm.conditional


def test_a_condition_on_an_unsearched_key_is_decided_by_the_config() -> None:
    # an arm that fixes loss=logit_adjusted, whose config has no class weights at all
    arm = SearchSpace.build({}, COND, [], config_values={"loss.class_weights": None},
                            arm_overrides=["loss=logit_adjusted"])
    study = optuna.create_study()
    assert arm.sample(study.ask()) == {}
    arm = SearchSpace.build({}, COND, [], config_values={"loss.class_weights": "none"},
                            arm_overrides=["loss=ce", "loss.class_weights=inverse"])  # the arm's value wins
    assert set(arm.sample(study.ask())) == {"loss.reweight_from_fraction"}
