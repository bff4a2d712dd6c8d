"""imbsweep as a library in the user's own PyTorch loop: the public modules' ``__all__`` and
docstrings, no Hydra needed, and docs/library.md's example run exactly as written (so the page
cannot rot); its table of losses checked against the constructors."""

from __future__ import annotations

import doctest
import importlib
import inspect
import re
import subprocess
import sys
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from imbsweep._paths import PROJECT_ROOT

PAGE = PROJECT_ROOT / "docs" / "library.md"
#: the modules a user imports in a loop of their own
LIBRARY = ["imbsweep.losses", "imbsweep.resampling", "imbsweep.posthoc", "imbsweep.decoupling", "imbsweep.models",
           "imbsweep.own_models"]


def _own(module: ModuleType) -> dict[str, Any]:
    """The public classes and functions ``module`` defines (in itself or, for a package, in its
    private submodules)."""
    name = module.__name__
    return {k: v for k, v in vars(module).items() if not k.startswith("_")
            and (inspect.isclass(v) or inspect.isfunction(v))
            and (v.__module__ == name or v.__module__.startswith(f"{name}._"))}


@pytest.mark.parametrize("name", LIBRARY)
def test_all_lists_what_the_module_defines_and_only_names_that_exist(name: str) -> None:
    module = importlib.import_module(name)
    listed = module.__all__
    assert len(set(listed)) == len(listed), listed
    assert [n for n in listed if not hasattr(module, n)] == []
    assert sorted(set(_own(module)) - set(listed)) == []  # nothing public left out
    undocumented = [n for n in listed if (inspect.isclass(getattr(module, n)) or inspect.isfunction(getattr(module, n)))
                    and not inspect.getdoc(getattr(module, n))]
    assert undocumented == []


@pytest.mark.parametrize("name", LIBRARY)
def test_the_examples_in_the_docstrings_run(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = {t.name: t for t in finder.find(module, globs=vars(module))}
    for n, obj in _own(module).items():  # a package's names live in its private submodules
        found.update({t.name: t for t in finder.find(obj, f"{name}.{n}", globs=vars(module))})
    runner = doctest.DocTestRunner()
    for t in found.values():
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0
    with_examples = {"imbsweep.losses": 3, "imbsweep.resampling": 1, "imbsweep.posthoc": 1, "imbsweep.own_models": 1}
    assert result.attempted >= with_examples.get(name, 0)  # the examples were found, and run


def _subclasses(cls: type) -> set[type]:
    out: set[type] = set()
    direct: list[type] = cls.__subclasses__()
    for c in direct:
        out |= {c, *_subclasses(c)}
    return out


def test_every_loss_is_importable_from_imbsweep_losses() -> None:
    import imbsweep.losses as L

    losses = {c for c in _subclasses(L.ImbalanceLoss) if c.__module__.startswith("imbsweep.losses")}
    assert len(losses) == 6
    assert {c.__name__ for c in losses} <= set(L.__all__)
    assert all(getattr(L, c.__name__) is c for c in losses)
    assert set(L.LOSSES.values()) == losses  # and each is built by its name


def test_the_library_needs_no_hydra_omegaconf_or_mlflow() -> None:
    code = ("import sys, torch\n"
            "from imbsweep.losses import build_loss\n"
            "from imbsweep.resampling import ImbalancedSampler\n"
            "from imbsweep.posthoc import adjusted_logits, best_posthoc_tau\n"
            "from imbsweep.decoupling import taunorm_logits\n"
            "loss = build_loss({'_target_': 'imbsweep.losses.LDAM', 'class_weights': 'inverse',\n"
            "                   'reweight_from_epoch': 2}, [30, 3])\n"
            "loss.set_epoch(2)\n"
            "head = loss.make_head(4, 2)\n"
            "z = head(torch.randn(33, 4))\n"
            "y = torch.tensor([0] * 30 + [1] * 3)\n"
            "loss(z, y).backward()\n"
            "idx = list(ImbalancedSampler(y, 'class_balanced'))\n"
            "tau, _ = best_posthoc_tau(z.detach(), y, [30, 3])\n"
            "assert adjusted_logits(z, [30, 3], tau).shape == (33, 2) and len(idx) == 33\n"
            "print(sorted(m for m in ('hydra', 'omegaconf', 'mlflow', 'optuna') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- docs/library.md ------------------------------------------------------------------------------


def test_the_library_page_example_runs_as_written() -> None:
    from imbsweep.losses import class_weights
    from imbsweep.models import NormedLinear
    from imbsweep.posthoc import TAU_GRID

    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    assert len(blocks) == 3  # the example, LDAM, tau-normalisation: each continues the one before
    ns: dict[str, Any] = {}
    with torch.random.fork_rng():  # the page seeds torch's global generator
        for i, code in enumerate(blocks):
            exec(compile(code, f"{PAGE}[python block {i + 1}]", "exec"), ns)  # noqa: S102 - the page's own code
    # the sampler made one pass per epoch; the class weights are on since epoch 10 (DRW), off before
    assert ns["sampler"].epoch == ns["epochs"] + 1
    loss_fn = ns["loss_fn"]
    inverse = class_weights(ns["counts"], "inverse")
    assert inverse is not None and torch.equal(loss_fn.weight, inverse)
    loss_fn.set_epoch(9)
    assert loss_fn.weight is None
    # post-hoc adjustment: tau picked on validation over the default grid, the test split predicted
    assert ns["tau"] in TAU_GRID and tuple(ns["val_scores"]) == TAU_GRID
    assert ns["val_scores"][ns["tau"]] == max(ns["val_scores"].values())
    assert ns["pred"].shape == (300,) and len(ns["recall"]) == 3
    # 3 balanced test classes: chance is 1/3. The page's seeded run gives 0.80 (torch 2.13, CPU);
    # 0.6 leaves room for other torch builds while a model that learnt nothing stays far below
    assert 0.6 < ns["balanced_acc"] <= 1.0
    assert isinstance(ns["ldam_model"][2], NormedLinear) and ns["ldam"].reweight_from_epoch == 10
    assert ns["tn_tau"] in TAU_GRID and ns["tn_pred"].shape == (300,)


def _table_rows() -> dict[str, tuple[str, str]]:
    """The page's table of losses: ``{name: (class, its own arguments cell)}``."""
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \| (.*?) \| .*? \|$", PAGE.read_text(), re.M)
    return {name: (cls, args) for name, cls, args in rows}


def test_the_page_lists_every_loss_with_its_arguments_and_defaults() -> None:
    from imbsweep.losses import LOSSES

    rows = _table_rows()
    assert sorted(rows) == sorted(LOSSES)
    for name, cls in LOSSES.items():
        listed, args = rows[name]
        assert listed == cls.__name__
        documented = dict(re.findall(r"`(\w+)` \(([^,)]+)", args))
        params = {p.name: p.default for p in inspect.signature(cls).parameters.values() if p.name != "class_counts"}
        assert sorted(documented) == sorted(params), name
        for arg, default in params.items():
            shown = f'"{default}"' if isinstance(default, str) else repr(default)
            assert documented[arg] == shown, (name, arg)


def test_the_library_functions_take_plain_python_values() -> None:
    from imbsweep.losses import build_loss
    from imbsweep.resampling import build_resampler

    # a name or a plain dict, class counts as a list: no config node
    assert build_loss("focal", [5, 1]).gamma == 2.0
    assert build_loss({"_target_": "imbsweep.losses.CrossEntropy", "reweight_from_fraction": 0.5,
                       "class_weights": "inverse"}, np.array([5, 1]), epochs=4).reweight_from_epoch == 3
    assert build_loss({"name": "focal", "gamma": 1.0}, [5, 1]).gamma == 1.0  # an app's own config, by name
    assert build_resampler("sqrt", [0, 0, 1], 3).name == "sqrt"
    assert build_resampler(None, np.array([0, 1]), 3).name == "none"
