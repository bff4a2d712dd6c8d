from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from imbsweep.errors import ConfigError
from imbsweep.resampling import RESAMPLERS, ImbalancedSampler, build_resampler

COUNTS = [500, 158, 50, 16, 5]
LABELS = torch.repeat_interleave(torch.arange(5), torch.tensor(COUNTS))
N = len(LABELS)
# Chi-square statistic of the class frequencies over 20 epochs of draws (df = 4). Measured over
# seeds 0..999 for class_balanced, sqrt and progressive (epoch 3 of 5): mean 3.97-4.05 (as a
# chi2(4) has), 99.9th percentile 15.7-20.9, maximum 22.2. The bound sits above that maximum
# and above the chi2(4) 99.99% quantile (23.5); the wrong distribution scores in the thousands.
CHI2_BOUND = 25.0


def expected(name: str, epoch: int, epochs: int) -> np.ndarray:
    n = np.array(COUNTS, dtype=np.float64)
    instance, balanced = n / n.sum(), np.full(len(n), 1 / len(n))
    if name == "none":
        return instance
    if name == "class_balanced":
        return balanced
    if name == "sqrt":
        return np.sqrt(n) / np.sqrt(n).sum()
    t = (epoch - 1) / (epochs - 1)
    return (1 - t) * instance + t * balanced


def chi2(obs: np.ndarray, p: np.ndarray) -> float:
    exp = p * obs.sum()
    return float(((obs - exp) ** 2 / exp).sum())


def draw(name: str, epoch: int, epochs: int, seed: int, times: int = 20) -> np.ndarray:
    r = build_resampler(name, LABELS, epochs)
    g = torch.Generator().manual_seed(seed)
    obs = np.zeros(len(COUNTS))
    for _ in range(times):
        idx = r.indices(epoch, g)
        assert idx.shape == (N,) and int(idx.min()) >= 0 and int(idx.max()) < N
        obs += np.bincount(LABELS[idx].numpy(), minlength=len(COUNTS))
    return obs


@pytest.mark.parametrize("name", ["class_balanced", "sqrt", "progressive"])
@pytest.mark.parametrize("seed", range(5))
def test_class_frequencies_over_many_draws(name: str, seed: int) -> None:
    obs = draw(name, epoch=3, epochs=5, seed=seed)
    assert chi2(obs, expected(name, 3, 5)) < CHI2_BOUND
    assert chi2(obs, expected("none", 3, 5)) > 20 * CHI2_BOUND  # the test can tell samplers apart


def test_no_resampling_is_one_shuffled_pass() -> None:
    g = torch.Generator().manual_seed(0)
    idx = build_resampler(None, LABELS, 5).indices(1, g)
    assert sorted(idx.tolist()) == list(range(N))


def test_progressive_goes_from_instance_to_class_balanced() -> None:
    r = build_resampler({"_target_": "imbsweep.resampling.ProgressiveResampler"}, LABELS, 11)
    np.testing.assert_allclose(r.class_probs(1).numpy(), expected("none", 1, 11))
    np.testing.assert_allclose(r.class_probs(11).numpy(), expected("class_balanced", 11, 11))
    np.testing.assert_allclose(r.class_probs(6).numpy(), expected("progressive", 6, 11))


def test_within_a_class_examples_are_drawn_uniformly() -> None:
    # class 4 has 5 examples; over many class-balanced draws each is picked about equally
    obs = np.zeros(N)
    r = build_resampler("class_balanced", LABELS, 1)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        obs += np.bincount(r.indices(1, g).numpy(), minlength=N)
    tail = obs[-5:]
    assert chi2(tail, np.full(5, 0.2)) < CHI2_BOUND


@pytest.mark.parametrize("name", sorted(RESAMPLERS))
def test_same_seed_same_draws(name: str) -> None:
    a = build_resampler(name, LABELS, 4).indices(2, torch.Generator().manual_seed(7))
    b = build_resampler(name, LABELS, 4).indices(2, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_every_resampler_has_a_config() -> None:
    from imbsweep._paths import PACKAGE_CONF

    for path in (PACKAGE_CONF / "resampling").glob("*.yaml"):
        r = build_resampler(OmegaConf.load(path), LABELS, 3)
        assert type(r) is RESAMPLERS[path.stem] and r.name == path.stem
    assert sorted(p.stem for p in (PACKAGE_CONF / "resampling").glob("*.yaml")) == sorted(RESAMPLERS)


def test_a_resampler_is_named_as_a_loss_is_in_an_apps_own_config() -> None:
    """A name, ``{name: …}`` (an app's own config) and ``_target_`` build the same resampler."""
    by = [build_resampler("sqrt", LABELS, 3), build_resampler({"name": "sqrt"}, LABELS, 3),
          build_resampler({"_target_": "imbsweep.resampling.SqrtResampler"}, LABELS, 3)]
    assert {type(r) for r in by} == {RESAMPLERS["sqrt"]}
    assert type(build_resampler(None, LABELS, 3)) is RESAMPLERS["none"]
    with pytest.raises(ConfigError, match=r"resampling.name='smote': must be one of none, class_balanced"):
        build_resampler({"name": "smote", "power": 2}, LABELS, 3)


def test_bad_resampling_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match=r"resampling='smote': must be one of none, class_balanced"):
        build_resampler("smote", LABELS, 3)
    with pytest.raises(ConfigError, match=r"resampling.power=2: not an argument of imbsweep.resampling.SqrtResampler"):
        build_resampler({"_target_": "imbsweep.resampling.SqrtResampler", "power": 2}, LABELS, 3)
    with pytest.raises(ConfigError, match=r"resampling.labels=\[0\]: is given at run time"):
        build_resampler({"_target_": "imbsweep.resampling.SqrtResampler", "labels": [0]}, LABELS, 3)


# --- ImbalancedSampler: the same draws as a torch Sampler, for a DataLoader of the user's own ----


def _loaded(sampler: ImbalancedSampler, passes: int, epoch: int) -> np.ndarray:
    """Class frequencies of ``passes`` passes of a DataLoader over the labels, each at ``epoch``."""
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(LABELS), batch_size=100, sampler=sampler)
    obs = np.zeros(len(COUNTS))
    for _ in range(passes):
        sampler.set_epoch(epoch)
        for (yb,) in loader:
            obs += np.bincount(yb.numpy(), minlength=len(COUNTS))
    return obs


@pytest.mark.parametrize("name", ["class_balanced", "sqrt", "progressive"])
@pytest.mark.parametrize("seed", range(5))
def test_the_sampler_in_a_dataloader_draws_classes_in_proportion(name: str, seed: int) -> None:
    # 20 passes at epoch 3 of 5 are the draws CHI2_BOUND was measured on (over seeds 0..999, above):
    # the sampler draws what the resampler draws (the next test)
    sampler = ImbalancedSampler(LABELS, name, epochs=5, generator=torch.Generator().manual_seed(seed))
    obs = _loaded(sampler, 20, epoch=3)
    assert obs.sum() == 20 * N
    assert chi2(obs, expected(name, 3, 5)) < CHI2_BOUND
    assert chi2(obs, expected("none", 3, 5)) > 20 * CHI2_BOUND  # the test can tell samplers apart


@pytest.mark.parametrize("name", sorted(RESAMPLERS))
def test_the_sampler_draws_what_the_resampler_draws_epoch_after_epoch(name: str) -> None:
    sampler = ImbalancedSampler(LABELS.numpy(), name, epochs=4, generator=torch.Generator().manual_seed(7))
    resampler, gen = build_resampler(name, LABELS, 4), torch.Generator().manual_seed(7)
    for epoch in (1, 2, 3):  # each pass is the next epoch
        assert list(sampler) == resampler.indices(epoch, gen).tolist()
    assert sampler.epoch == 4 and len(sampler) == N


def test_the_sampler_is_deterministic_for_a_seed() -> None:
    a, b, c = (list(ImbalancedSampler(LABELS.tolist(), "sqrt", generator=torch.Generator().manual_seed(s)))
               for s in (3, 3, 4))
    assert a == b and a != c
    with torch.random.fork_rng():  # without a generator: one seeded from torch's global generator
        torch.manual_seed(5)
        d = list(ImbalancedSampler(LABELS))
        torch.manual_seed(5)
        assert list(ImbalancedSampler(LABELS)) == d


def test_bad_sampler_arguments_are_errors() -> None:
    with pytest.raises(ConfigError, match=r"resampling='smote': must be one of none, class_balanced"):
        ImbalancedSampler(LABELS, "smote")
    with pytest.raises(ValueError, match="epochs=0 must be an integer >= 1"):
        ImbalancedSampler(LABELS, epochs=0)
    for labels in ([[0, 1]], [0, -1], []):
        with pytest.raises(ValueError, match="labels must be a non-empty 1-D sequence of class indices >= 0"):
            ImbalancedSampler(labels)
