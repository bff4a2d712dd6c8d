"""Per-class weight schemes, normalised to sum to the number of classes C."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError

SCHEMES = ("none", "inverse", "sqrt_inverse", "effective_number")


def class_weights(counts: np.ndarray | torch.Tensor, scheme: str, beta: float = 0.999,
                  key: str = "loss.class_weights") -> torch.Tensor | None:
    """Weights from training class counts ``n_c``.

    - ``none``: no weights (``None``).
    - ``inverse``: ``1 / n_c``.
    - ``sqrt_inverse``: ``n_c ** -0.5``.
    - ``effective_number``: ``(1 - beta) / (1 - beta ** n_c)`` (Cui et al. 2019).

    Each is scaled so the weights sum to C. ``beta`` must be in [0, 1); at ``beta = 0`` the
    effective-number weights are all equal (no reweighting).

    Example:
        >>> class_weights([3, 1], "inverse").tolist()
        [0.5, 1.5]
    """
    if scheme not in SCHEMES:
        raise ConfigError(key, scheme, f"must be one of {', '.join(SCHEMES)}")
    if not 0 <= beta < 1:
        raise ConfigError("loss.beta", beta, "must be in [0, 1)")
    n = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    if scheme == "none":
        return None
    if bool((n <= 0).any()):
        raise ConfigError(key, scheme, "needs every class to have at least one training example")
    if scheme == "inverse":
        w = 1.0 / n
    elif scheme == "sqrt_inverse":
        w = n.rsqrt()
    else:
        w = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), n))
    return (w * len(n) / w.sum()).float()
