from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch.optim.lr_scheduler import LRScheduler

from imbsweep import schedulers as S
from imbsweep.errors import ConfigError


def _lrs(make: Callable[[torch.optim.Optimizer], LRScheduler], steps: int) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_with_warmup() -> None:
    lrs = _lrs(lambda o: S.cosine(o, total_steps=12, steps_per_epoch=2, warmup_epochs=1), 12)
    assert lrs[:2] == [0.5, 1.0]
    assert lrs[2] == pytest.approx(1.0)
    assert lrs[7] == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert lrs[-1] < 0.03


def test_step_and_constant() -> None:
    lrs = _lrs(lambda o: S.step(o, total_steps=8, steps_per_epoch=2, step_size=2, gamma=0.5), 8)
    assert lrs == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5]
    assert _lrs(lambda o: S.constant(o, total_steps=4, steps_per_epoch=2), 4) == [1.0] * 4


def test_warmup_longer_than_training_is_an_error() -> None:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(ConfigError, match="scheduler.warmup_epochs=5"):
        S.cosine(opt, total_steps=6, steps_per_epoch=2, warmup_epochs=5)
