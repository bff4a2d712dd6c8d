"""Holding Ctrl-C (SIGINT) and SIGTERM while a write that must not be cut in half runs."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def signals_held(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """SIGINT/SIGTERM arriving inside the block are delivered, with the handlers that were in
    place, when it ends (only the first; a no-op outside the main thread, where Python runs
    no signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: held.append(signum))
                for s in signums if signal.getsignal(s) is not None}  # None: set outside Python
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if held:
            signal.raise_signal(held[0])
