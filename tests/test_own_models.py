"""A model of the user's own inside imbsweep's app (``imbsweep.own_models``): what its constructor
is given, its linear head found or not, the tricks that need one, local weights, a torchvision
builder; then the worked example of docs/own_model.md through the real CLI in a subprocess, its
package on PYTHONPATH as a user's would be."""

from __future__ import annotations

import logging
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from imbsweep._paths import PROJECT_ROOT
from imbsweep.data import Dataset
from imbsweep.errors import ConfigError
from imbsweep.models import NormedLinear, ScaledHead
from imbsweep.own_models import HEAD_NEEDED, LinearHeadModel, build_model, find_linear_head
from imbsweep.training import decoupled, fit, prepare
from tests.helpers.cli import run_cli
from tests.helpers.configs import MakeCfg
from tests.helpers.data import make_pngs
from tests.helpers.models import linear_head
from tests.helpers.own_models import MyNet
from tests.helpers.stores import mlflow_client, mlflow_db, runs

OWN = "tests.helpers.own_models"
DOC = PROJECT_ROOT / "docs" / "own_model.md"
#: TINY without its model settings (model=mlp's hidden_sizes=[32], which a user's model does not take)
SMALL = ("data=digits_lt", "trainer.epochs=2", "trainer.batch_size=64")


def _ds(n_classes: int = 4, shape: tuple[int, ...] = (6,), kind: str = "vector") -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, *shape)).astype(np.float32)
    y = np.arange(40) % n_classes
    return Dataset("toy", x, y, x[:8], y[:8], x[:8], y[:8], tuple(map(str, range(n_classes))), kind=kind,
                   image_shape=shape if kind == "image" else None)


def test_a_module_returning_its_linear_layer_is_seen_as_head_of_features() -> None:
    torch.manual_seed(0)
    plain = MyNet(6, 4, hidden=5)
    torch.manual_seed(0)
    model = build_model({"_target_": f"{OWN}.MyNet", "hidden": 5}, _ds())
    assert decoupled(model)
    assert isinstance(model, LinearHeadModel) and model.path == "fc"
    assert (linear_head(model).in_features, linear_head(model).out_features) == (5, 4)
    x = torch.randn(3, 6)
    assert torch.equal(model(x), plain(x))  # the same function, taken apart
    assert isinstance(model.unwrap(), MyNet) and torch.equal(model.unwrap()(x), plain(x))


@pytest.mark.parametrize(("target", "path"), [("NumClasses", "head"), ("sequential", "3")])
def test_num_classes_goes_to_a_signature_that_names_it_or_takes_kwargs(target: str, path: str) -> None:
    # NumClasses takes num_classes and no in_features; the factory takes **kwargs, as torchvision's do
    model = build_model({"_target_": f"{OWN}.{target}"}, _ds(n_classes=5))
    assert isinstance(model, LinearHeadModel) and model.path == path
    assert model(torch.randn(2, 6)).shape == (2, 5)


def test_a_head_that_is_not_the_output_is_no_head() -> None:
    model = build_model({"_target_": f"{OWN}.ScaledOutput"}, _ds())  # returns 2 * self.fc(x)
    assert type(model).__name__ == "ScaledOutput"  # left as built: training takes its logits as they are
    _, path = find_linear_head(model, torch.randn(2, 6), 4)
    assert path is None
    net = MyNet(6, 4)
    out, path = find_linear_head(net.train(), torch.randn(2, 6), 4)
    assert path == "fc" and net.training and out.shape == (2, 4)  # its mode is given back


def test_the_settings_of_imbsweeps_model_options_it_does_not_take_are_left_out(make_cfg: MakeCfg) -> None:
    # model=mlp's settings (and resnet's), then model._target_ of the user's: MyNet gets `hidden` only
    node = {"_target_": f"{OWN}.MyNet", "hidden_sizes": [256, 256], "dropout": 0.1, "depth": 32, "max_norm": None}
    assert isinstance(build_model(node, _ds()), LinearHeadModel)
    with pytest.raises(ConfigError, match=rf"^model.nosuch=1: not an argument of {OWN}.MyNet; allowed: hidden$"):
        build_model({"_target_": f"{OWN}.MyNet", "nosuch": 1}, _ds())
    # outside a Hydra job the command line is not known: a value other than the option's was set by
    # someone, and is an error as any key the model does not take (in a job: the command line's keys)
    with pytest.raises(ConfigError, match=rf"^model.hidden_sizes=\[32\]: not an argument of {OWN}.MyNet"):
        prepare(make_cfg(*SMALL, f"model._target_={OWN}.MyNet", "model.hidden_sizes=[32]", tiny=False))


@pytest.mark.parametrize(("target", "message"), [
    ("WrongWidth", r"must map a batch to logits \[N, n_classes=4\]; a batch of data=toy of shape \(2, 6\) gave "
                   r"\(2, 3\)"),
    ("WantsImages", r"cannot take a batch of data=toy of shape \(2, 6\): RuntimeError: .*conv2d"),
])
def test_a_model_that_does_not_fit_the_data_is_a_one_line_error(target: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_model({"_target_": f"{OWN}.{target}"}, _ds())
    assert re.match(rf"model._target_='{OWN}.{target}': {message}", str(info.value)), str(info.value)
    assert "\n" not in str(info.value)


def test_max_norm_works_on_a_users_head_and_is_an_error_without_one() -> None:
    model = build_model({"_target_": f"{OWN}.MyNet", "max_norm": 0.5}, _ds())
    head = linear_head(model)
    with torch.no_grad():
        head.weight.mul_(100)
    model.apply_max_norm()  # type: ignore[operator]
    assert float(head.weight.detach().norm(dim=1).max()) <= 0.5 * (1 + 1e-6)
    for target in ("NoHead", "ScaledOutput"):
        with pytest.raises(ConfigError, match=re.escape(f"model.max_norm=1.0: {HEAD_NEEDED}; {OWN}.{target} has none")):
            build_model({"_target_": f"{OWN}.{target}", "max_norm": 1.0}, _ds())


def test_local_weights_load_into_a_users_module(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    saved = MyNet(6, 7, hidden=5)  # another class count: its classifier does not fit
    torch.save({"state_dict": saved.state_dict()}, tmp_path / "w.pt")
    model = build_model({"_target_": f"{OWN}.MyNet", "hidden": 5, "weights": str(tmp_path / "w.pt")}, _ds())
    assert isinstance(model, LinearHeadModel)
    body = model.unwrap().get_submodule("body.1")
    assert isinstance(body, torch.nn.Linear) and torch.equal(body.weight, saved.state_dict()["body.1.weight"])
    assert "not loaded (name or shape differ): fc.bias, fc.weight" in caplog.text
    with pytest.raises(ConfigError, match=r"model.weights='nope.pt': no such file"):
        build_model({"_target_": f"{OWN}.MyNet", "weights": "nope.pt"}, _ds())


def test_a_torchvision_builder_gets_num_classes_and_a_local_weights_file(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    from imbsweep.data import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(1)
    imagenet = tv.models.resnet18()  # torchvision's names, 1000 classes: as its ImageNet file
    torch.save(imagenet.state_dict(), tmp_path / "resnet18.pth")
    # on top of model=resnet's settings, as `data=image_folder model._target_=...` composes them
    node = {"_target_": "torchvision.models.resnet18", "arch": "resnet32", "depth": 32, "width": 16,
            "weights": str(tmp_path / "resnet18.pth"), "max_norm": None}
    with caplog.at_level(logging.WARNING):
        model = build_model(node, _ds(n_classes=3, shape=(3, 16, 16), kind="image"))
    assert isinstance(model, LinearHeadModel) and model.path == "fc"
    assert linear_head(model).out_features == 3
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3)
    assert "not loaded (name or shape differ): fc.bias, fc.weight" in caplog.text
    conv1 = model.unwrap().get_submodule("conv1")  # (the module as built: its `fc` back in place)
    assert isinstance(conv1, torch.nn.Conv2d) and torch.equal(conv1.weight, imagenet.conv1.weight)


def test_wrapping_changes_nothing_a_users_mlp_trains_as_imbsweeps(make_cfg: MakeCfg) -> None:
    # MyNet(hidden=32) is MLP([32]) without dropout, its layers created in the same order: the same
    # initial weights, so the same run, every metric alike (the tau-normalisation scan's included)
    own = fit(make_cfg(*SMALL, f"model._target_={OWN}.MyNet", "+model.hidden=32", "loss.class_weights=inverse",
                       tiny=False))
    mlp = fit(make_cfg(*SMALL, "model.hidden_sizes=[32]", "model.dropout=0.0", "loss.class_weights=inverse",
                       tiny=False))
    assert own.state == "complete" and "taunorm/tau" in own.metrics
    drop = ("fit_time_s",)
    assert {k: v for k, v in own.metrics.items() if k not in drop} == {
        k: v for k, v in mlp.metrics.items() if k not in drop}


@pytest.mark.parametrize("overrides", [
    ["loss=ldam", "stage2=lws", "stage2.epochs=2"],
    ["model.max_norm=0.5", "stage2=crt", "stage2.epochs=2", "eval.taunorm_tau=0.5"],
])
def test_the_tricks_that_need_a_head_work_on_a_users_head(make_cfg: MakeCfg, overrides: list[str]) -> None:
    cfg = make_cfg(*SMALL, f"model._target_={OWN}.MyNet", *overrides, tiny=False)
    setup = prepare(cfg)
    result = fit(cfg, setup=setup)
    assert result.state == "complete" and result.epochs_run == 4  # 2 epochs, then 2 of stage 2
    assert result.taunorm is not None and "test/balanced_acc_taunorm" in result.metrics
    head = setup.model.head
    if "loss=ldam" in overrides:
        assert isinstance(head, ScaledHead) and isinstance(head.base, NormedLinear)  # LWS over LDAM's classifier
    else:
        assert isinstance(head, torch.nn.Linear) and float(head.weight.detach().norm(dim=1).max()) <= 0.5 * (1 + 1e-6)


@pytest.mark.parametrize("overrides", [
    ["loss=focal", "loss.class_weights=inverse"],
    ["loss=class_balanced", "resampling=sqrt"],
    ["loss=logit_adjusted", "augment=mixup"],
    ["loss=balanced_softmax", "resampling=progressive"],
    ["loss.class_weights=effective_number", "loss.reweight_from_epoch=2", "augment=remix", "eval.posthoc_tau=1.0"],
])
def test_a_model_without_a_head_trains_with_the_tricks_that_need_only_logits(make_cfg: MakeCfg,
                                                                             overrides: list[str]) -> None:
    result = fit(make_cfg(*SMALL, f"model._target_={OWN}.NoHead", *overrides, tiny=False))
    assert result.state == "complete" and result.epochs_run == 2
    assert result.posthoc is not None and "test/balanced_acc_posthoc" in result.metrics
    # the tau-normalisation scan has no classifier to normalise: skipped, its metrics not logged
    assert result.taunorm is None and not [k for k in result.metrics if "taunorm" in k]


@pytest.mark.parametrize(("target", "overrides", "key"), [
    ("NoHead", ["loss=ldam"], "loss='ldam'"),
    ("NoHead", ["stage2=lws"], "stage2='lws'"),
    ("NoHead", ["eval.taunorm_tau=0.5"], "eval.taunorm_tau=0.5"),
    ("ScaledOutput", ["loss=ldam"], "loss='ldam'"),  # an `fc` that is not the output is no head
    ("ScaledOutput", ["stage2=crt"], "stage2='crt'"),
])
def test_the_tricks_that_need_a_head_name_their_key_without_one(make_cfg: MakeCfg, target: str,
                                                                 overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{key}: {HEAD_NEEDED}; {OWN}.{target} has none")):
        prepare(make_cfg(*SMALL, f"model._target_={OWN}.{target}", *overrides, tiny=False))


# --- the worked example of docs/own_model.md, through the real CLI --------------------------------


def _doc_package(root: Path) -> Path:
    """docs/own_model.md's `my_pkg/__init__.py`, written as the user would, under ``root``."""
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
               if b.startswith("# my_pkg/__init__.py")]
    (root / "my_pkg").mkdir(parents=True, exist_ok=True)
    (root / "my_pkg" / "__init__.py").write_text(code)
    return root


def _doc_command(start: str) -> list[str]:
    """The arguments of the docs' command line that starts with ``start`` (``PYTHONPATH=.`` and
    ``imbsweep`` left out)."""
    (line,) = [ln for ln in DOC.read_text().splitlines() if ln.removeprefix("PYTHONPATH=. ").startswith(start)]
    return shlex.split(line.removeprefix("PYTHONPATH=. "))[1:]


FAST = ("trainer.epochs=2", "trainer.batch_size=64")


def test_the_docs_model_on_pythonpath_trains_through_the_cli(workdir: Path, tmp_path: Path) -> None:
    args = _doc_command("imbsweep run model._target_=my_pkg.MyNet")
    assert args[:2] == ["run", "model._target_=my_pkg.MyNet"] and "+model.hidden=64" in args
    p = run_cli(workdir, *args, *FAST, "tracking.experiment=own", pythonpath=_doc_package(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "my_pkg.MyNet does not take dropout, hidden_sizes" in p.stdout  # model=mlp's settings: left out
    (run,) = runs(workdir, "own")
    assert run.info.status == "FINISHED" and run.data.tags["imbsweep.state"] == "complete"
    assert run.data.params["model._target_"] == "my_pkg.MyNet" and run.data.params["model.hidden"] == "64"
    client = mlflow_client(workdir)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/balanced_acc")] == [1, 2]
    # its linear head `fc` was found: the tau-normalisation scan ran, as for imbsweep's own models
    assert {"test/balanced_acc", "posthoc/tau", "taunorm/tau", "test/balanced_acc_taunorm"} <= set(run.data.metrics)


@pytest.mark.parametrize(("overrides", "line"), [
    (["loss=ldam"], f"loss='ldam': {HEAD_NEEDED}; my_pkg.CosineNet has none"),
    (["model.max_norm=1.0"], f"model.max_norm=1.0: {HEAD_NEEDED}; my_pkg.CosineNet has none"),
    (["stage2=crt"], f"stage2='crt': {HEAD_NEEDED}; my_pkg.CosineNet has none"),
    # model=mlp's setting, set on the command line: for a model that does not take it, an error
    (["model.dropout=0.3"], "model.dropout=0.3: not an argument of my_pkg.CosineNet; allowed: hidden"),
])
def test_the_tricks_that_need_a_head_are_one_line_and_exit_2_for_the_docs_headless_model(
        tmp_path: Path, overrides: list[str], line: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    p = run_cli(work, "run", "model._target_=my_pkg.CosineNet", "data=digits_lt", *FAST, *overrides,
                pythonpath=_doc_package(tmp_path / "src"))
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines == [f"imbsweep: error: {line}"], p.stderr
    assert not mlflow_db(work).exists() or not runs(work, "imbsweep")  # no run, so none left RUNNING


def test_the_docs_headless_model_trains_with_the_logit_tricks_through_the_cli(workdir: Path, tmp_path: Path) -> None:
    p = run_cli(workdir, "run", "model._target_=my_pkg.CosineNet", "data=digits_lt", *FAST, "loss=focal",
                "loss.class_weights=inverse", "resampling=sqrt", "augment=remix", "tracking.experiment=headless",
                pythonpath=_doc_package(tmp_path))
    assert p.returncode == 0, p.stderr
    (run,) = runs(workdir, "headless")
    assert run.info.status == "FINISHED" and run.data.tags["imbsweep.trick"] == "focal+w=inverse+rs=sqrt+remix"
    metrics = set(run.data.metrics)
    assert {"test/balanced_acc", "posthoc/tau", "test/balanced_acc_posthoc"} <= metrics
    assert not [m for m in metrics if "taunorm" in m]  # no head to normalise: the scan is skipped


def test_a_torchvision_model_with_local_weights_on_an_image_folder_through_the_cli(workdir: Path,
                                                                                  tmp_path: Path) -> None:
    from imbsweep.data import import_torchvision

    root = make_pngs(tmp_path / "pets", {"cat": 30, "dog": 20, "eel": 16})
    torch.manual_seed(0)
    torch.save(import_torchvision().models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    p = run_cli(workdir, "run", "data=image_folder", f"data.path={root}", "data.image_size=16",
                "data.n_val_per_class=4", "data.n_test_per_class=4", "model._target_=torchvision.models.resnet18",
                f"model.weights={tmp_path / 'resnet18.pth'}", "trainer.epochs=2", "trainer.batch_size=16",
                "tracking.experiment=tv")
    assert p.returncode == 0, p.stderr
    assert "not loaded (name or shape differ): fc.bias, fc.weight" in p.stdout  # the rest was loaded
    (run,) = runs(workdir, "tv")
    assert run.info.status == "FINISHED" and run.data.params["model._target_"] == "torchvision.models.resnet18"
    assert {"test/balanced_acc", "taunorm/tau"} <= set(run.data.metrics)  # its `fc` is a linear head


@pytest.mark.slow  # (make test-all; a user's model through the CLI stays in make test: the docs' model)
def test_a_sweep_preset_runs_a_users_model_and_a_searched_key_it_does_not_take_is_one_line(workdir: Path) -> None:
    # sweep=smoke sets model.hidden_sizes for model=mlp: left out for MyNet in the checks made before
    # the study opens as in its trials; a key the sweep searches is the user's and must be taken
    target = "model._target_=tests.helpers.own_models.MyNet"
    p = run_cli(workdir, "sweep", "smoke", target, "hydra.sweeper.n_trials=1", pythonpath=PROJECT_ROOT)
    assert p.returncode == 0, p.stderr
    client = mlflow_client(workdir)
    def every_run() -> set[str]:
        return {r.info.run_id for r in client.search_runs([e.experiment_id for e in client.search_experiments()])}

    before = every_run()
    p = run_cli(workdir, "sweep", "smoke", target, "hydra.sweeper.study_name=drop", "model.dropout=interval(0,0.5)",
                pythonpath=PROJECT_ROOT)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and lines == [
        "imbsweep: error: model.dropout='interval(0, 0.5)': is searched, but a run does not take it: not an "
        "argument of tests.helpers.own_models.MyNet; allowed: hidden"], p.stderr
    assert every_run() == before  # none started
