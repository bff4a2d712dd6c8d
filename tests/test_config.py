"""Every option of every config group composes and builds with no glue code; the config's
flattening, redaction and YAML round trip (``imbsweep._config``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from imbsweep import _config
from imbsweep._paths import PACKAGE_CONF
from imbsweep.training import fit, prepare
from tests.helpers.configs import MakeCfg

GROUPS = {g: sorted(p.stem for p in (PACKAGE_CONF / g).glob("*.yaml"))
          for g in ("data", "model", "loss", "resampling", "augment", "stage2", "optimizer", "scheduler", "trainer",
                    "tracking")}


def test_groups_have_the_documented_options() -> None:
    assert GROUPS["data"] == ["breast_cancer_lt", "cifar100_lt", "cifar10_lt", "digits_lt", "image_folder", "iris_lt",
                              "mnist1d_lt", "synthetic", "tabular", "wine_lt"]
    assert GROUPS["model"] == ["cnn1d", "logreg", "mlp", "resnet"]
    assert GROUPS["optimizer"] == ["adam", "adamw", "sgd"]
    assert GROUPS["scheduler"] == ["constant", "cosine", "step"]
    assert GROUPS["loss"] == ["balanced_softmax", "ce", "class_balanced", "focal", "ldam", "logit_adjusted"]
    assert GROUPS["resampling"] == ["class_balanced", "none", "progressive", "sqrt"]
    assert GROUPS["augment"] == ["mixup", "none", "remix"]
    assert GROUPS["stage2"] == ["crt", "lws", "none"]


@pytest.mark.parametrize(("group", "option"), [
    (g, o) for g, opts in GROUPS.items() for o in opts
    if g in ("model", "loss", "resampling", "augment", "stage2", "optimizer", "scheduler", "trainer", "tracking")])
def test_each_option_builds_and_trains_one_epoch(make_cfg: MakeCfg, group: str, option: str) -> None:
    overrides = [f"{group}={option}", "data=digits_lt", "trainer.epochs=1"]
    if group != "model":
        overrides.append("model=logreg")
    elif option == "cnn1d":  # a 1-D CNN takes sequences: MNIST-1D (digits are images)
        overrides[1:2] = ["data=mnist1d_lt", "data.n_train_max=30", "data.n_val_per_class=5",
                          "data.n_test_per_class=5"]
    elif option == "resnet":  # digits are 8x8 images: a narrow ResNet-20 is enough to build and train
        overrides += ["model.depth=20", "model.width=4"]
    res = fit(make_cfg(*overrides, tiny=False))
    assert res.state == "complete"


@pytest.mark.parametrize("option", ["digits_lt", "mnist1d_lt", "synthetic"])
def test_each_builtin_dataset_builds(make_cfg: MakeCfg, option: str) -> None:
    small = {"mnist1d_lt": ["data.n_train_max=30", "data.n_val_per_class=5",
                            "data.n_test_per_class=5"],
             "synthetic": ["data.n_train_max=50", "data.n_val_per_class=5",
                           "data.n_test_per_class=5"]}.get(option, [])
    setup = prepare(make_cfg(f"data={option}", *small, "model=logreg", tiny=False))
    assert setup.dataset.n_classes == 10 and setup.dataset.train_class_counts.min() >= 1


def test_tabular_option_needs_path_and_target(make_cfg: MakeCfg, tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{'yes' if i % 4 else 'no'}\n"
                                       for i in range(80)))
    setup = prepare(make_cfg("data=tabular", f"data.path={csv}", "data.target=y"))
    assert setup.dataset.class_names == ("no", "yes")


def test_flatten_and_redact() -> None:
    cfg = OmegaConf.create({"a": {"b": 1, "c": [1, 2], "password": "s3cret"},
                            "url": "postgresql+psycopg2://u:pw@host:5432/db", "none": None,
                            "empty": {}})
    flat = dict(_config.flatten(_config.redacted_container(cfg)))
    assert flat == {"a.b": "1", "a.c": "[1, 2]", "a.password": "***",
                    "url": "postgresql+psycopg2://u:***@host:5432/db", "none": "None",
                    "empty": "{}"}
    assert _config.redact("http://host/x") == "http://host/x"


def test_to_yaml_reads_back_the_same_values(make_cfg: MakeCfg) -> None:
    tricky = {"s_float": "1e-3", "s_bool": "true", "s_inf": "inf", "s_null": "null",
              "s_yes": "yes", "s_int": "10", "floats": [1e-5, 0.1, float("inf")], "none": None,
              "nested": {"x": "hello", "y": ""}}
    for container in (tricky, _config.redacted_container(make_cfg())):
        back = OmegaConf.to_container(OmegaConf.create(_config.to_yaml(container)))
        assert back == container


@pytest.mark.parametrize(("key", "secret"), [
    ("password", True), ("db.db_password", True), ("apiToken", True), ("extra.api_key", True), ("apikey", True),
    ("access_token", True), ("AWS_SECRET_ACCESS_KEY", True), ("credentials", True),
    ("max_tokens", False), ("tokenizer", False), ("model.num_tokens", False), ("keyword", False), ("lr", False)])
def test_a_credential_is_a_key_whose_words_name_one(key: str, secret: bool) -> None:
    """Word by word: ``max_tokens`` and ``tokenizer`` are settings, not credentials (a searched
    ``model.max_tokens`` hidden from the record could not be re-run or exported)."""
    from imbsweep._config import redact_override, secret_key

    assert secret_key(key) is secret
    assert (redact_override(f"+{key}=abc") == f"+{key}=***") is secret
