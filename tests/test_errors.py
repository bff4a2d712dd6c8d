"""The errors bad input raises."""

from __future__ import annotations


def test_config_errors_survive_pickling() -> None:
    """Worker pools send exceptions back pickled; one that cannot be rebuilt hangs the pool."""
    import pickle

    from imbsweep.errors import ConfigError, DataError

    for err in (ConfigError("loss.tau", -1, "must be >= 0"), DataError("data.path", "x.csv", "not found")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err) and back.key == err.key
