"""The errors bad input raises."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_config_errors_survive_pickling() -> None:
    """Worker pools send exceptions back pickled; one that cannot be rebuilt hangs the pool."""
    import pickle

    from imbsweep.errors import ConfigError, DataError

    for err in (ConfigError("loss.tau", -1, "must be >= 0"), DataError("data.path", "x.csv", "not found")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err) and back.key == err.key


AT_EXIT = """
import atexit, time
import imbsweep.cli as cli
atexit.register(lambda: (print("at exit", flush=True), time.sleep(30)))  # as torch's handler, slow
cli.main = lambda: 0
cli.entry()
"""


def test_a_ctrl_c_while_the_process_exits_ends_it_without_a_traceback() -> None:
    """Issue 30: a second Ctrl-C landed in torch's atexit handler and printed its traceback."""
    import signal
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", AT_EXIT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "at exit"
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=20)
    finally:
        p.kill()
    assert p.returncode == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_an_error_raised_while_a_ctrl_c_is_handled_is_an_interrupt_not_bad_input(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Ctrl-C inside a library's work whose cleanup then fails (OmegaConf once raised
    "'NoneType' object has no attribute '_invalidate_flags_cache'") was reported as that error,
    exit 2 as if the input were bad; it is the interrupt: exit 130, "interrupted"."""
    from omegaconf.errors import OmegaConfBaseException

    import imbsweep.app as app
    from imbsweep.cli import EXIT_INTERRUPTED, main

    def cut(cfg: object, progress: bool = True) -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise OmegaConfBaseException("'NoneType' object has no attribute '_invalidate_flags_cache'") from None

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(app, "run", cut)
    assert main(["run", "trainer.epochs=1"]) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert err.startswith("imbsweep: interrupted") and "_invalidate_flags_cache" not in err, err
