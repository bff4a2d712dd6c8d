"""Mixed precision for the training steps on CUDA (``trainer.amp``); a no-op on the CPU."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from .errors import ConfigError


class Amp:
    """``torch.autocast`` around the forward pass and, for float16, a ``GradScaler`` around
    the backward pass and the optimizer step.

    ``trainer.amp``: ``auto`` (on CUDA: bfloat16 where the GPU supports it, else float16 with
    loss scaling; on the CPU: off), ``true`` (the same, and an error on the CPU) or ``false``.
    Off, every method does exactly what plain float32 training does (``loss.backward()``,
    ``optimizer.step()``), so CPU runs are unchanged. Inside autocast, softmax, log-softmax
    and the cross-entropy family run in float32 (autocast's float32 list); evaluation runs in
    float32 outside it.

    Args:
        device: the device training runs on (``cpu``, ``cuda``, ``cuda:1``).
        setting: ``trainer.amp``.
    """

    def __init__(self, device: str, setting: Any = "auto") -> None:
        if not (setting == "auto" or isinstance(setting, bool)):
            raise ConfigError("trainer.amp", setting, "must be auto, true or false")
        cuda = str(device).startswith("cuda")
        if setting is True and not cuda:
            raise ConfigError("trainer.amp", setting, f"mixed precision needs CUDA (trainer.device={device}); "
                                                      "use auto or false")
        self.dtype: torch.dtype | None = None
        if cuda and setting in ("auto", True):
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.device_type = "cuda" if cuda else "cpu"
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype is torch.float16 else None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The forward pass's context: autocast to :attr:`dtype` when on, else nothing."""
        if self.dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``; with loss scaling, skipped for a step whose gradients overflowed."""
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()
