from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from imbsweep.errors import ConfigError
from imbsweep.models import CNN1D, MLP, LogisticRegression
from tests.helpers.models import features, linear_head, scaled_head


@pytest.mark.parametrize("model", [
    LogisticRegression(40, 10), MLP(40, 10, [16, 8], 0.2), CNN1D(40, 10),
])
def test_models_map_inputs_to_class_logits(model: torch.nn.Module) -> None:
    out = model(torch.randn(7, 40))
    assert out.shape == (7, 10)
    out.sum().backward()  # differentiable end to end
    assert isinstance(model.head, torch.nn.Linear)


def test_cnn1d_has_the_reference_shape() -> None:
    m = CNN1D(40, 10)
    convs = [x for x in features(m) if isinstance(x, torch.nn.Conv1d)]
    assert [(c.kernel_size[0], c.stride[0], c.padding[0], c.out_channels) for c in convs] == [
        (5, 2, 1, 25), (3, 2, 1, 25), (3, 2, 1, 25)]
    assert linear_head(m).in_features == 125  # 25 channels x length 5, as in the MNIST-1D code


def test_model_errors() -> None:
    with pytest.raises(ConfigError, match="model.dropout"):
        MLP(4, 2, [8], dropout=1.0)
    with pytest.raises(ConfigError, match="model.hidden_sizes"):
        MLP(4, 2, [])


def test_max_norm_keeps_every_class_row_within_the_bound_after_each_step() -> None:
    torch.manual_seed(0)
    model = MLP(10, 5, [8], max_norm=0.5)
    head = linear_head(model)
    with torch.no_grad():
        head.weight.mul_(torch.tensor([[10.0], [10.0], [0.1], [0.1], [5.0]]))  # some rows far outside
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    x, y = torch.randn(64, 10), torch.randint(0, 5, (64,))
    projected = 0
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        stepped = head.weight.detach().clone()
        bias = head.bias.detach().clone()
        model.apply_max_norm()
        norms = head.weight.norm(dim=1)
        assert (norms <= 0.5 * (1 + 1e-6)).all()  # float rounding of the rescaled row's norm only
        kept = stepped.norm(dim=1) <= 0.5
        assert torch.equal(head.weight[kept], stepped[kept])  # rows inside the ball are left alone
        torch.testing.assert_close(norms[~kept], torch.full_like(norms[~kept], 0.5))  # the rest: onto the sphere
        assert torch.equal(head.bias, bias)  # the bias is not constrained
        projected += int((~kept).sum())
    assert projected >= 3  # the bound was active: the first step alone leaves 3 rows outside


def test_max_norm_off_or_frozen_does_nothing() -> None:
    from imbsweep.models import ScaledHead

    m = LogisticRegression(4, 3)
    before = linear_head(m).weight.detach().clone() * 100
    with torch.no_grad():
        linear_head(m).weight.copy_(before)
    m.apply_max_norm()  # max_norm None: off
    assert torch.equal(linear_head(m).weight, before)
    m = LogisticRegression(4, 3, max_norm=0.1)
    m.head = ScaledHead(m.head)  # LWS: the classifier is frozen under its scales
    _, base = scaled_head(m)
    frozen = base.weight.detach().clone()
    m.apply_max_norm()
    assert torch.equal(base.weight, frozen)


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), True, "big"])
def test_bad_max_norm_is_a_one_line_error(value: Any) -> None:  # values of any type: what a config could hold
    with pytest.raises(ConfigError, match=r"model.max_norm=.*: must be a finite number > 0 or null"):
        CNN1D(40, 10, max_norm=value)


def test_resnet32_has_the_papers_size_and_loads_local_weights(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    import torch

    from imbsweep.models import ResNet

    def n_params(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    # the CIFAR ResNets' sizes (He et al. 2016; 0.27M, 0.46M, 0.85M as usually reported)
    assert [n_params(ResNet(3072, 10, (3, 32, 32), depth=d)) for d in (20, 32, 56)] == [269722, 464154, 853018]
    m = ResNet(192, 3, (3, 8, 8), depth=8, width=4)
    assert m(torch.zeros(2, 192)).shape == (2, 3)  # flat rows are seen as images
    torch.save(m.state_dict(), tmp_path / "w.pt")
    m2 = ResNet(192, 5, (3, 8, 8), depth=8, width=4, weights=str(tmp_path / "w.pt"))  # 5 classes: head skipped
    torch.testing.assert_close(features(m2)[1].weight, features(m)[1].weight)
    assert "not loaded (name or shape differ): head.bias, head.weight" in caplog.text
    r18 = ResNet(192, 4, (3, 8, 8), arch="resnet18")
    assert r18(torch.zeros(2, 3, 8, 8)).shape == (2, 4) and isinstance(r18.head, torch.nn.Linear)
    with pytest.raises(ConfigError, match=r"model.weights='nope.pt': no such file"):
        ResNet(192, 3, (3, 8, 8), weights="nope.pt")
    with pytest.raises(ConfigError, match=r"model.depth=30: must be 6n \+ 2"):
        ResNet(192, 3, (3, 8, 8), depth=30)
    capped = ResNet(192, 3, (3, 8, 8), depth=8, width=4, max_norm=0.1)  # weight balancing works on it too
    capped.apply_max_norm()
    assert float(linear_head(capped).weight.detach().norm(dim=1).max()) <= 0.1 + 1e-6
