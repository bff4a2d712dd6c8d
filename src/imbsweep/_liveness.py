"""Whether a process that wrote something down (a trial's worker) is still
alive: its pid and start time, so that a recycled pid does not count."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a recycled pid;
    None when it is gone or a zombie (dead, not yet reaped by its parent: its ``/proc`` entry
    stays until then, and a killed worker must not count as alive)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def process_alive(host: str | None, pid: int | None, start: str | None) -> bool | None:
    """True/False for a process on this host; None when it runs elsewhere (cannot tell)."""
    if host != socket.gethostname() or pid is None:
        return None
    if Path("/proc").is_dir():
        now = proc_start(int(pid))
        return now is not None and (start is None or now == start)
    try:  # no /proc: only "does a process with this pid exist"
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
