from __future__ import annotations

import pytest
import torch

from imbsweep.errors import ConfigError
from imbsweep.models import CNN1D, MLP, LogisticRegression


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
    convs = [x for x in m.features.modules() if isinstance(x, torch.nn.Conv1d)]
    assert [(c.kernel_size[0], c.stride[0], c.padding[0], c.out_channels) for c in convs] == [
        (5, 2, 1, 25), (3, 2, 1, 25), (3, 2, 1, 25)]
    assert m.head.in_features == 125  # 25 channels x length 5, as in the MNIST-1D code


def test_model_errors() -> None:
    with pytest.raises(ConfigError, match="model.dropout"):
        MLP(4, 2, [8], dropout=1.0)
    with pytest.raises(ConfigError, match="model.hidden_sizes"):
        MLP(4, 2, [])


def test_max_norm_keeps_every_class_row_within_the_bound_after_each_step() -> None:
    torch.manual_seed(0)
    model = MLP(10, 5, [8], max_norm=0.5)
    with torch.no_grad():
        model.head.weight.mul_(torch.tensor([[10.0], [10.0], [0.1], [0.1], [5.0]]))  # some rows far outside
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    x, y = torch.randn(64, 10), torch.randint(0, 5, (64,))
    projected = 0
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        stepped = model.head.weight.detach().clone()
        bias = model.head.bias.detach().clone()
        model.apply_max_norm()
        norms = model.head.weight.norm(dim=1)
        assert (norms <= 0.5 * (1 + 1e-6)).all()  # float rounding of the rescaled row's norm only
        kept = stepped.norm(dim=1) <= 0.5
        assert torch.equal(model.head.weight[kept], stepped[kept])  # rows inside the ball are left alone
        torch.testing.assert_close(norms[~kept], torch.full_like(norms[~kept], 0.5))  # the rest: onto the sphere
        assert torch.equal(model.head.bias, bias)  # the bias is not constrained
        projected += int((~kept).sum())
    assert projected >= 3  # the bound was active: the first step alone leaves 3 rows outside


def test_max_norm_off_or_frozen_does_nothing() -> None:
    from imbsweep.models import ScaledHead

    m = LogisticRegression(4, 3)
    before = m.head.weight.detach().clone() * 100
    with torch.no_grad():
        m.head.weight.copy_(before)
    m.apply_max_norm()  # max_norm None: off
    assert torch.equal(m.head.weight, before)
    m = LogisticRegression(4, 3, max_norm=0.1)
    m.head = ScaledHead(m.head)  # LWS: the classifier is frozen under its scales
    frozen = m.head.base.weight.detach().clone()
    m.apply_max_norm()
    assert torch.equal(m.head.base.weight, frozen)


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), True, "big"])
def test_bad_max_norm_is_a_one_line_error(value: object) -> None:
    with pytest.raises(ConfigError, match=r"model.max_norm=.*: must be null \(no MaxNorm\) or a finite number > 0"):
        CNN1D(40, 10, max_norm=value)
