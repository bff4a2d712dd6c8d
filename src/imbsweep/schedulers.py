"""Learning-rate schedules, stepped once per optimizer step, each with a linear warmup.

Config files hold ``_target_`` (one of these functions), ``_partial_: true`` and the
schedule's own arguments; ``optimizer``, ``total_steps`` and ``steps_per_epoch`` are passed
by the training loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from .constraints import Interval, takes
from .errors import ConfigError

RUNTIME_ARGS = ("optimizer", "total_steps", "steps_per_epoch")


def _with_warmup(optimizer: Optimizer, total_steps: int, warmup_steps: int,
                 after: Callable[[float], float]) -> LambdaLR:
    """``after(progress)`` maps progress in [0, 1] past the warmup to an lr factor."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(total_steps - warmup_steps, 1)
        return after(min((step - warmup_steps) / span, 1.0))

    return LambdaLR(optimizer, factor)


_WARMUP = [Interval(float, 0, None)]


def _warmup_steps(warmup_epochs: float, steps_per_epoch: int, total_steps: int) -> int:
    steps = int(round(warmup_epochs * steps_per_epoch))
    if steps >= total_steps > 0:
        raise ConfigError("scheduler.warmup_epochs", warmup_epochs,
                          "must be shorter than trainer.epochs")
    return steps


@takes("scheduler", {"warmup_epochs": _WARMUP})
def constant(optimizer: Optimizer, total_steps: int, steps_per_epoch: int,
             warmup_epochs: float = 0) -> LambdaLR:
    """The optimizer's lr throughout, after the warmup."""
    w = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)
    return _with_warmup(optimizer, total_steps, w, lambda p: 1.0)


@takes("scheduler", {"warmup_epochs": _WARMUP, "min_lr_ratio": [Interval(float, 0, 1)]})
def cosine(optimizer: Optimizer, total_steps: int, steps_per_epoch: int,
           warmup_epochs: float = 0, min_lr_ratio: float = 0.0) -> LambdaLR:
    """Cosine decay from the optimizer's lr to ``min_lr_ratio * lr`` (Loshchilov & Hutter)."""
    w = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)
    return _with_warmup(optimizer, total_steps, w,
                        lambda p: min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


@takes("scheduler", {"warmup_epochs": _WARMUP, "step_size": [Interval(int, 1, None)],
                     "gamma": [Interval(float, 0, 1, "right")]})
def step(optimizer: Optimizer, total_steps: int, steps_per_epoch: int,
         step_size: int = 30, gamma: float = 0.1, warmup_epochs: float = 0) -> LambdaLR:
    """Multiply the lr by ``gamma`` every ``step_size`` epochs."""
    w = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)

    def factor(step_i: int) -> float:
        if step_i < w:
            return (step_i + 1) / w
        return float(gamma ** (step_i // (step_size * steps_per_epoch)))

    return LambdaLR(optimizer, factor)
