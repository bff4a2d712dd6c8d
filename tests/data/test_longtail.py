"""Long-tailed class counts: the exponential and step profiles, and their errors."""

from __future__ import annotations

import numpy as np
import pytest

from imbsweep import data as D
from imbsweep.errors import ConfigError


def test_exp_profile_follows_the_formula() -> None:
    counts = D.longtail_counts(1000, 10, 100, "exp")
    expected = [int(np.floor(1000 * 100 ** (-i / 9) + 1e-9)) for i in range(10)]
    assert counts.tolist() == expected
    assert counts[0] == 1000 and counts[-1] == 10  # ratio exactly n_max / n_min
    assert (np.diff(counts) <= 0).all()


def test_step_profile_and_balanced() -> None:
    assert D.longtail_counts(500, 4, 10, "step").tolist() == [500, 500, 50, 50]
    assert D.longtail_counts(300, 5, 1, "exp").tolist() == [300] * 5


@pytest.mark.parametrize(("key", "kwargs"), [
    ("data.imbalance_ratio", {"imbalance_ratio": 0.5}),
    ("data.profile", {"profile": "linear"}),
])
def test_profile_errors_name_the_key(key: str, kwargs: dict) -> None:
    args = {"n_max": 10, "n_classes": 3, "imbalance_ratio": 10, "profile": "exp", **kwargs}
    with pytest.raises(ConfigError, match=key):
        D.longtail_counts(**args)
