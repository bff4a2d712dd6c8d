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
    convs = [x for x in m.features if isinstance(x, torch.nn.Conv1d)]
    assert [(c.kernel_size[0], c.stride[0], c.padding[0], c.out_channels) for c in convs] == [
        (5, 2, 1, 25), (3, 2, 1, 25), (3, 2, 1, 25)]
    assert m.head.in_features == 125  # 25 channels x length 5, as in the MNIST-1D code


def test_model_errors() -> None:
    with pytest.raises(ConfigError, match="model.dropout"):
        MLP(4, 2, [8], dropout=1.0)
    with pytest.raises(ConfigError, match="model.hidden_sizes"):
        MLP(4, 2, [])
