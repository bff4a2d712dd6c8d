"""How long ``imbsweep compare`` and ``imbsweep export`` take on a 1000-trial study.

The study is SYNTHETIC (``tests/helpers/synthetic.py``): 1000 trial runs (about 10% pruned, 3%
failed) over 5 tricks plus 5 reseed runs per trick, written through the MLflow client into a
fresh local store (SQLite + artifacts), each with the real flattened config as params, a
``config.yaml`` and ``per_class.csv`` artifact. Then each command runs as a user types it
(a new process: Python start-up and imports included), ``--repeat`` times, and the median is
reported next to an in-process breakdown.

    .venv/bin/python bench/compare_scale.py [--trials 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # bench/ is scripts, not a package
sys.path.insert(1, str(Path(__file__).parents[1]))  # the synthetic study is the tests' (tests/helpers)
from tests.helpers.synthetic import make_study  # noqa: E402

from _common import machine  # noqa: E402

CLI = [sys.executable, "-W", "ignore", "-m", "imbsweep"]
# the same command with Python's cyclic GC left as stock Python has it (imbsweep pauses it in
# compare/export and freezes what is alive before exiting): the side-by-side baseline
STOCK_GC = [sys.executable, "-W", "ignore", "-c",
            "import gc, runpy, sys; gc.disable = gc.freeze = lambda: None; sys.argv = ['imbsweep', *sys.argv[1:]]; "
            "runpy.run_module('imbsweep', run_name='__main__')"]


def timed_cli(cwd: Path, *args: str, cli: list[str] = CLI) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([*cli, *args], cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"imbsweep {' '.join(args)} failed: {p.stderr}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from imbsweep._client import make_client
    from imbsweep.compare import compare, write_report
    from imbsweep.export import export
    from imbsweep.results import load_study

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        uri = f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"
        t0 = time.perf_counter()
        make_study(make_client(uri), "scale", args.trials, work / "mlruns" / "artifacts", reseeds=5)
        print(f"synthetic study: {args.trials} trials + 25 reseed runs written in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        cli = {"compare": [], "compare (stock GC)": [], "compare --no-report": [],
               "export": []}  # type: dict[str, list[float]]
        for _ in range(args.repeat):
            cli["compare"].append(timed_cli(work, "compare", "scale"))
            cli["compare (stock GC)"].append(timed_cli(work, "compare", "scale", cli=STOCK_GC))
            cli["compare --no-report"].append(timed_cli(work, "compare", "scale", "--no-report"))
            cli["export"].append(timed_cli(work, "export", "scale", "--force", "--top-k", "3",
                                           "--out", str(work / "best")))
        t = time.perf_counter()
        record = load_study("scale", uri)
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        c = compare(record)
        t_cmp = time.perf_counter() - t
        t = time.perf_counter()
        write_report(c, record, work / "reports" / "inproc", log_to_parent=False)
        t_rep = time.perf_counter() - t
        t = time.perf_counter()
        export(record, work / "best2", top_k=3)
        t_exp = time.perf_counter() - t
    print(f"\nmachine: {machine()}; {len(record.runs)} runs read back\n")
    print("| command (new process each time) | median of " + str(args.repeat) + " | all |")
    print("| --- | --- | --- |")
    for name, ts in cli.items():
        print(f"| `imbsweep {name}` | {statistics.median(ts):.2f} s | "
              + ", ".join(f"{x:.2f}" for x in ts) + " |")
    pairs = [b / a for a, b in zip(cli["compare"], cli["compare (stock GC)"], strict=True)]
    print(f"\nstock GC / imbsweep's GC pause and freeze, compare, median of per-pair ratios: "
          f"{statistics.median(pairs):.2f}")
    print(f"\nin-process (imports already done): load_study {t_load:.2f} s, compare {t_cmp:.2f} s, "
          f"report (plots, HTML) {t_rep:.2f} s, export top-3 {t_exp:.2f} s")


if __name__ == "__main__":
    main()
