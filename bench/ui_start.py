"""Time from ``imbsweep ui`` to its first page, with MLflow's default four server workers
and with imbsweep's one, interleaved (the machine is shared and noisy).

    .venv/bin/python bench/ui_start.py [--repeats 3]

Needs a local store: it runs one tiny training run into a temporary state folder first.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # bench/ is scripts, not a package
from _common import machine  # noqa: E402

CLI = [sys.executable, "-m", "imbsweep"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def first_page(cwd: Path, workers: int, timeout: float = 180) -> float:
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([*CLI, "ui", "--port", str(port), "--workers", str(workers)], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.perf_counter() - t0 < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:  # noqa: S310
                    if r.status == 200 and b"<html" in r.read().lower():
                        return time.perf_counter() - t0
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"no page after {timeout} s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        subprocess.run([*CLI, "run", "data=digits_lt", "model=logreg", "trainer.epochs=1"], cwd=cwd, check=True,
                       capture_output=True)
        times: dict[int, list[float]] = {4: [], 1: []}
        for _ in range(args.repeats):
            for w in times:
                times[w].append(first_page(cwd, w))
                print(f"workers={w}: {times[w][-1]:.1f} s", flush=True)
    print(f"\nmachine: {machine()}")
    for w, ts in times.items():
        print(f"workers={w}: median {statistics.median(ts):.1f} s (all: {', '.join(f'{t:.1f}' for t in ts)})")


if __name__ == "__main__":
    main()
