"""Mixed precision (``trainer.amp``): off on the CPU, and checked."""

from __future__ import annotations

import pytest

from imbsweep.errors import ConfigError


def test_amp_is_off_on_the_cpu_and_checked() -> None:
    from imbsweep._amp import Amp

    assert not Amp("cpu", "auto").enabled and Amp("cpu", False).scaler is None
    with pytest.raises(ConfigError, match=r"trainer.amp=True: mixed precision needs CUDA"):
        Amp("cpu", True)
    with pytest.raises(ConfigError, match=r"trainer.amp='fp16': must be auto, true or false"):
        Amp("cpu", "fp16")
