"""``imbsweep``: the command line.

    imbsweep run [HYDRA_OVERRIDES...]   train once (``-m`` for a Hydra multirun)
    imbsweep sweep NAME [OVERRIDES...]  run the study NAME (= run -m sweep=NAME): ./sweeps/NAME.yaml,
                                        ./conf/sweep/NAME.yaml, or one of imbsweep's (smoke, tricks, ...)
    imbsweep suite NAME --data A,B,C [--reseed K] [OVERRIDES...]
                                        the study NAME once per data option (study NAME-A, ...), then
                                        compare across them
    imbsweep compare STUDY [--reseed K] which arm wins: paired seeds, Holm-adjusted tests, verdicts
    imbsweep compare A B C [--reseed K] the same arms across studies (datasets): ranks, Friedman, Wilcoxon
    imbsweep export STUDY [--top-k K]   the best trial(s) as ./conf/best/STUDY.yaml (run +best=STUDY)
    imbsweep ui [--port N] [--host H]   the stock MLflow UI on the local store
    imbsweep dashboard [--port N]       the stock optuna-dashboard on the local Optuna storage
    imbsweep cache [--clear]            the dataset cache under mlruns/datasets: list it, or empty it

Errors from bad input print one line (key, value, what is allowed) and exit non-zero;
``HYDRA_FULL_ERROR=1`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._paths import state_dir
from ._servers import dashboard, ui
from ._stores import redact
from .errors import one_line, say
from .names import DATASETS, STATE_DIR, TAG_ARM, TAG_TRICK

EXIT_INTERRUPTED = 130


class _DropLines:
    """A stderr proxy that drops writes starting with ``prefix`` (a string or a tuple of them:
    argparse's usage block before its one-line error; Hydra's "Error executing job with
    overrides" line, redundant next to our one-line error in a single run)."""

    def __init__(self, stream: Any, prefix: str | tuple[str, ...], rename: tuple[str, str] | None = None) -> None:
        self._stream, self._prefix, self._rename = stream, prefix, rename

    def write(self, text: str) -> int:
        if text.startswith(self._prefix):
            return len(text)
        if self._rename is not None and text.startswith(self._rename[0]):  # argparse's "PROG: error: …"
            self._stream.write(self._rename[1] + text[len(self._rename[0]):])
            return len(text)
        return int(self._stream.write(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def hydra_error_line(exc: BaseException) -> str:
    """Hydra's multi-line composition errors as one line."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(exc, OverrideParseException):
        hint = " ".join(ln.strip() for ln in exc.message.splitlines() if ln.strip())
        return f"cannot parse override {exc.override!r}: {hint}"
    text = str(exc)
    if "hydra.sweeper.sampler.name" in text:  # the sampler became a config group (the official plugin's)
        return ("hydra.sweeper.sampler.name: the sampler is chosen with the config group hydra/sweeper/sampler, "
                "as in the official Optuna sweeper (hydra/sweeper/sampler=random on the command line; in a sweep "
                "file: defaults: [override /hydra/sweeper/sampler: random]); its settings stay under "
                "hydra.sweeper.sampler (seed, …)")
    if isinstance(exc, MissingConfigException) and exc.options is not None and exc.missing_cfg_file:
        group, _, option = exc.missing_cfg_file.rpartition("/")
        return f"{group}={option}: no such option; available: {', '.join(sorted(exc.options))}"
    unknown = _unknown_key(exc) or _typed_setting(exc)
    if unknown:
        return unknown
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(exc, MissingMandatoryValue) and getattr(exc, "full_key", None):
        key = exc.full_key
        return f"{key}: must be set, it has no default: add {key}=<value> to the command line (or to your config)"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        lines.append(f"({str(cause).strip().splitlines()[0]})")
    return " ".join(lines[:3]) if lines else type(exc).__name__


def _unknown_key(exc: BaseException) -> str | None:
    """An override of a key the config does not have (Hydra: "Could not override 'x'. To append
    to your config use +x=…"), as one line with the closest key there is and the keys beside it."""
    import difflib
    import re

    cause = exc.__cause__
    parent, full_key = getattr(cause, "parent_node", None), getattr(cause, "full_key", None)
    if "Could not override" not in str(exc) or parent is None or not full_key or not hasattr(parent, "keys"):
        return None
    typed = re.search(r"use \+(\S+)", str(exc))
    shown = typed.group(1) if typed else str(full_key)
    keys = [str(k) for k in parent if not str(k).startswith("_") and str(k) != "hydra"]
    prefix = str(full_key).rpartition(".")[0]
    near = difflib.get_close_matches(str(getattr(cause, "key", full_key)), keys, n=1, cutoff=0.6)
    hint = f"did you mean {prefix + '.' if prefix else ''}{near[0]}? " if near else ""
    where = f"{prefix} has" if prefix else "the config has"
    return f"{shown}: no such key; {hint}{where}: {', '.join(keys)} (+{shown} adds it)"


#: what a typed setting (the sweeper's structured config) takes, by OmegaConf's complaint
_TYPE_WORDS = {"to Integer": "must be an integer", "to Float": "must be a number",
               "valid bool": "must be true or false", "not Optional": "cannot be null"}


def _typed_setting(exc: BaseException) -> str | None:
    """A value of the wrong type for a typed setting (Hydra: "Error merging override
    hydra.sweeper.n_jobs='abc' (Value 'abc' of type 'str' could not be converted to Integer)"),
    as our one line: the key, the value and what it takes (its declaration, constraints.py)."""
    import re

    from omegaconf.errors import ValidationError

    cause = exc.__cause__
    found = re.match(r"Error merging override (\S+?)=", str(exc))
    if not isinstance(cause, ValidationError) or found is None:
        return None
    key = found.group(1).lstrip("+~")
    from .constraints import allowed_text
    from .sweep._settings import Settings

    name = key.removeprefix("hydra.sweeper.")
    declared = Settings._parameter_constraints.get(name) if key.startswith("hydra.sweeper.") else None
    words = next((w for k, w in _TYPE_WORDS.items() if k in str(cause)), "has the wrong type")
    allowed = allowed_text(declared) if declared else words
    return f"{key}={getattr(cause, 'value', None)!r}: {allowed}"


def write_out(content: str, out: str | None) -> None:
    """A table to ``--out`` (a file), or to standard output."""
    if out is None:
        sys.stdout.write(content)
        return
    from .errors import ImbsweepError

    try:
        Path(out).write_text(content)
    except OSError as exc:
        raise ImbsweepError(f"--out={out!r}: cannot write ({exc.strerror or exc})") from None


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (``kill``, ``timeout``, a scheduler) ends a run like Ctrl-C: KILLED, not RUNNING."""
    raise KeyboardInterrupt


def run_hydra(argv: Sequence[str], prog: str = "imbsweep run") -> int:
    """Run the Hydra app with ``argv`` as its command line; return the exit code."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .errors import ImbsweepError

    before = os.environ.get("HYDRA_FULL_ERROR")
    full = before == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us; we print them as one line
    from .sweep._procs import USER_FULL_ERROR

    mine = USER_FULL_ERROR not in os.environ  # what the user set: what a sweep's workers get (_procs)
    if mine:
        os.environ[USER_FULL_ERROR] = before or ""
    argv_before, sys.argv = sys.argv, [prog, *argv]
    previous = signal.signal(signal.SIGTERM, _terminate)
    stderr = sys.stderr
    single = not {"-m", "--multirun"} & set(argv)
    sys.stderr = _DropLines(stderr, ("usage: ", *(("Error executing job with overrides",) if single else ())),
                            rename=(f"{prog}: error: ", "imbsweep: error: "))
    from .sweep import _app

    program, _app.PROGRAM = _app.PROGRAM, [sys.executable, "-m", "imbsweep", "run"]  # what the sweep's workers run
    try:
        from . import app

        app.main()
    except ImbsweepError as exc:
        if full:
            raise
        say(f"error: {exc}")
        return exc.exit_code
    except (HydraException, OmegaConfBaseException) as exc:
        if full:
            raise
        if _interrupted(exc):
            say("interrupted; the MLflow run (if one started) is marked KILLED")
            return EXIT_INTERRUPTED
        say(f"error: {hydra_error_line(exc)}")
        return 2
    except KeyboardInterrupt:
        say("interrupted; the MLflow run (if one started) is marked KILLED")
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # --help, --cfg and Hydra's own exits
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:  # noqa: BLE001 - a bug, still not a traceback wall
        if full:
            raise
        if _interrupted(exc):
            say("interrupted; the MLflow run (if one started) is marked KILLED")
            return EXIT_INTERRUPTED
        line = _yaml_error(exc) or _output_folder_error(exc, single)
        if line is not None:  # a config file the user wrote, a folder Hydra cannot write: bad input
            say(f"error: {line}")
            return 2
        say(f"error: {one_line(exc, 1000)} (set HYDRA_FULL_ERROR=1 for the traceback)")
        return 1
    finally:
        _app.PROGRAM = program
        sys.stderr = stderr
        signal.signal(signal.SIGTERM, previous)
        sys.argv = argv_before  # called in-process (tests, a notebook), the caller's state is kept
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before
        if mine:
            os.environ.pop(USER_FULL_ERROR, None)
    return 0


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a Ctrl-C was being handled (inside a library's cleanup:
    a Ctrl-C amid OmegaConf's work once came out as "'NoneType' object has no attribute
    '_invalidate_flags_cache'", exit 2, as if the input were bad)."""
    seen: set[int] = set()
    links: list[BaseException | None] = [exc]
    while links:
        link = links.pop()
        if link is None or id(link) in seen:
            continue
        if isinstance(link, KeyboardInterrupt):
            return True
        seen.add(id(link))
        links += [link.__cause__, link.__context__]
    return False


def _output_folder_error(exc: BaseException, single: bool) -> str | None:
    """Hydra could not make or write the job's output folder (``hydra.run.dir``, by default
    ``outputs/<date>/<time>`` in the launch folder; a sweep checks ``hydra.sweep.dir`` before its
    study opens): one line naming the key; None for another error."""
    if not isinstance(exc, OSError) or exc.filename is None:
        return None
    tb, codes = exc.__traceback__, []
    while tb is not None:
        codes.append(tb.tb_frame.f_code)
        tb = tb.tb_next
    for here, below in zip(codes, codes[1:], strict=False):
        if here.co_name == "run_job" and Path(here.co_filename).parts[-3:] == ("hydra", "core", "utils.py") \
                and below.co_name in ("mkdir", "_save_config"):  # (not an error of the task function)
            key = "hydra.run.dir" if single else "hydra.sweep.dir"
            return (f"{key}='{Path(exc.filename).resolve()}': Hydra cannot write the job's output folder there "
                    f"({exc.strerror or exc}); launch from a folder you can write, or set {key} to one")
    return None


def _yaml_error(exc: BaseException) -> str | None:
    """A YAML syntax error in a config file (a sweep file, a group option) as one line naming the
    file, line and column; None for another error."""
    import yaml

    if not isinstance(exc, yaml.YAMLError):
        return None
    mark = getattr(exc, "problem_mark", None)
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "a config file"
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    context = getattr(exc, "context", None)
    return f"{where}: not valid YAML ({problem}{f' {context}' if context else ''})"


def _study_command(fn: Any, args: argparse.Namespace) -> int:
    """Run ``compare``/``export``: errors from bad input are one line and exit 2."""
    from mlflow.exceptions import MlflowException

    from .errors import ImbsweepError

    try:
        return int(fn(args))
    except ImbsweepError as exc:
        say(f"error: {exc}")
        return exc.exit_code
    except MlflowException as exc:
        say(f"error: MLflow store {redact(str(getattr(args, 'tracking_uri', '') or ''))!s}: "
             f"{str(exc).strip().splitlines()[0]}")
        return 2
    except KeyboardInterrupt:
        say("interrupted; replicates that finished are kept (run the same command to go on)")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug, still not a traceback wall
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        say(f"error: {type(exc).__name__}: {exc} (set HYDRA_FULL_ERROR=1 for the traceback)")
        return 1


def compare(args: argparse.Namespace) -> int:
    from .compare import print_table, to_csv, to_html, to_markdown, write_report
    from .errors import ImbsweepError
    from .export import safe_name

    for option, value, what in (("--reseed", args.reseed, "seeds per arm"), ("--jobs", args.jobs, "worker processes"),
                                ("--top", args.top, "arms to re-run")):
        if value is not None and value < 1:
            raise ImbsweepError(f"{option}={value}: must be an integer >= 1 ({what})")
        if value is not None and option != "--reseed" and args.reseed is None:
            raise ImbsweepError(f"{option}={value}: only with --reseed K (the {what} for its re-runs); without "
                                "--reseed, compare re-runs nothing")
    if len(args.studies) > 1:
        return _compare_across(args)
    args.study = args.studies[0]
    c, record = _comparison(args, args.study)
    report = None if args.no_report else Path(args.report_dir) / safe_name(args.study)
    files = write_report(c, record, report) if report else []
    if args.format == "table" and args.out is None:
        print_table(c, wide=args.wide)
    else:
        if args.format == "html":
            content = to_html(c, [f for f in files if f.suffix == ".png"])
        elif args.format == "table":
            import io

            buf = io.StringIO()
            print_table(c, buf, wide=args.wide)
            content = buf.getvalue()
        else:
            content = (to_csv if args.format == "csv" else to_markdown)(c)
        write_out(content, args.out)
    if c.warning and args.format != "table":
        say(f"warning: {c.warning}")
    if report:
        parent = record.parent_run_id
        where = f"; also in MLflow: parent run {parent}, artifacts report/, metrics compare/<arm>/..." if parent else ""
        print(f"report: {report}/ (report.html, comparison.csv/.md, plots){where}", file=sys.stderr)
    return 0


def _comparison(args: argparse.Namespace, study: str) -> tuple[Any, Any]:
    """The study's Comparison (after its ``--reseed`` re-runs) and its record."""
    from .compare import compare as make
    from .compare import reseed, resolve_baseline, sweep_jobs
    from .errors import ImbsweepError
    from .results import load_study

    record = load_study(study, args.tracking_uri, args.state_dir, connect_timeout=args.connect_timeout)
    if record.own_app:  # (another app's trials are picked on what they returned; --metric is what is reported)
        _check_metric(args.metric)
    if args.reseed is not None:
        jobs = args.jobs if args.jobs is not None else sweep_jobs(record)
        baseline = resolve_baseline(record, list(dict.fromkeys(record.trials["arm"])), args.baseline)
        if reseed(record, args.metric, args.reseed, jobs, args.state_dir, args.top, baseline, args.vary_split):
            record = load_study(study, args.tracking_uri, args.state_dir, connect_timeout=args.connect_timeout)
    if args.direction is not None and (record.own_app or args.metric is None
                                       or args.metric in [m for m, _ in record.objectives]):
        raise ImbsweepError(f"--direction={args.direction}: only with --metric naming a metric another app logged "
                            "(an objective keeps its own direction; imbsweep's app compares its objective's test "
                            "twin in the objective's direction)")
    return make(record, args.metric, args.baseline, args.test, args.vary_split, direction=args.direction), record


def _compare_across(args: argparse.Namespace) -> int:
    """``imbsweep compare A B C …``: the same arms over several studies (one dataset each)."""
    from .compare._across import across, print_across
    from .compare._across import to_csv as across_csv
    from .compare._across import to_markdown as across_markdown
    from .compare._plots import plot_cd
    from .errors import ImbsweepError
    from .export import safe_name

    if args.format == "html" or args.wide:
        raise ImbsweepError(f"{'--format=html' if args.format == 'html' else '--wide'}: only for one study; across "
                            "studies: --format table, csv or md (the report holds the diagram)")
    pairs = [_comparison(args, s) for s in args.studies]
    a = across([c for c, _ in pairs])
    if args.format == "table" and args.out is None:
        print_across(a)
    else:
        import io

        buf = io.StringIO()
        if args.format == "table":
            print_across(a, buf)
        content = buf.getvalue() if args.format == "table" else (across_csv if args.format == "csv"
                                                                  else across_markdown)(a)
        write_out(content, args.out)
    if not args.no_report:
        report = Path(args.report_dir) / ("across-" + "+".join(safe_name(s) for s in args.studies))
        try:
            report.mkdir(parents=True, exist_ok=True)
            (report / "across.csv").write_text(across_csv(a))
            (report / "across.md").write_text(across_markdown(a))
            plot_cd(a, report / "critical_difference.png")
        except OSError as exc:
            raise ImbsweepError(f"--report-dir={args.report_dir!r}: cannot write {report} "
                                f"({exc.strerror or exc})") from None
        for _, record in pairs:  # each study's parent run holds the comparison it took part in
            if record.parent_run_id:
                record.client.log_artifacts(record.parent_run_id, str(report), f"report/{report.name}")
        sys.stdout.flush()
        print(f"report: {report}/ (across.csv/.md, critical_difference.png); also in MLflow: each study's parent "
              f"run, artifacts report/{report.name}/", file=sys.stderr)
    return 0


SUITE_USAGE = "imbsweep suite NAME --data A,B,C [--reseed K] [--compare-only] [HYDRA_OVERRIDES...]"


def suite(argv: list[str]) -> int:
    """``imbsweep suite NAME --data A,B,C``: the sweep NAME once per data option, each its own
    study ``<study>-<option>`` (``<study>``: ``hydra.sweeper.study_name`` if given, else NAME),
    one after another as separate commands (each resumable: the same command again picks up
    where it stopped), then ``imbsweep compare`` across them with ``--reseed K`` (default 5)."""
    import subprocess

    p = _Parser(prog="imbsweep suite", usage=SUITE_USAGE, add_help=True)
    p.add_argument("name", help="a sweep file (as for imbsweep sweep)")
    p.add_argument("--data", required=True, help="the data options, comma-separated (each a study of its own)")
    p.add_argument("--reseed", type=int, default=5, metavar="K", help="seeds per arm for compare (default 5)")
    p.add_argument("--compare-only", action="store_true", help="run no sweep: compare the suite's studies")
    try:
        args, overrides = p.parse_known_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    options = [d.strip() for d in args.data.split(",")]
    if len(options) < 2 or any(not d for d in options) or len(set(options)) < len(options):
        say(f"error: --data={args.data!r}: must name at least two different data options, comma-separated "
            "(e.g. --data mnist1d_lt,digits_lt)")
        return 2
    if args.reseed < 2:
        say(f"error: --reseed={args.reseed}: must be an integer >= 2 (paired seeds per arm)")
        return 2
    bad = [o for o in overrides if o.startswith("-")]
    if bad:
        say(f"error: {bad[0]}: not an option of imbsweep suite ({SUITE_USAGE})")
        return 2
    named = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("hydra.sweeper.study_name=")]
    base = named[-1] if named else args.name
    rest = [o for o in overrides if not o.lstrip("+").startswith("hydra.sweeper.study_name=")]
    studies = [f"{base}-{d}" for d in options]
    me = [sys.executable, "-m", "imbsweep"]
    if not args.compare_only:
        for d, study in zip(options, studies, strict=True):
            print(f"imbsweep suite: study {study} (data={d})", file=sys.stderr, flush=True)
            code = subprocess.call([*me, "sweep", args.name, f"data={d}", f"hydra.sweeper.study_name={study}", *rest])
            if code != 0:
                return code
    store = []  # where the sweeps recorded (their overrides): where compare reads
    for o in overrides:
        key, _, value = o.lstrip("+").partition("=")
        if key == "state_dir" and value:
            store += ["--state-dir", value]
        elif key == "tracking.uri" and value and value != "null":
            store += ["--tracking-uri", value]
    return subprocess.call([*me, "compare", *studies, "--reseed", str(args.reseed), *store])


def _check_metric(metric: str | None) -> None:
    """``--metric`` picks the best trials, so it is a validation metric, as ``objective.metric``
    is: selecting on the test split would report a number it was chosen by."""
    from .errors import ImbsweepError

    if metric is not None and not metric.startswith("val/"):
        raise ImbsweepError(f"--metric={metric!r}: must be a validation metric (val/...): the best trials are "
                            "selected on it, and the test split is only reported, never selected on "
                            "(compare reports test/<name> of the trials selected on val/<name>)")


def export(args: argparse.Namespace) -> int:
    from ._paths import user_conf_dir
    from .errors import ImbsweepError
    from .export import app_out_dir, app_reproduce, reproduce_command
    from .export import export as write
    from .results import load_study

    if args.winner and (args.arm is not None or args.trick is not None):
        raise ImbsweepError(f"--winner with --{'arm' if args.arm is not None else 'trick'}: choose one (--winner "
                            "exports the arm compare recommends)")
    record = load_study(args.study, args.tracking_uri, args.state_dir, read_runs=False,
                        connect_timeout=args.connect_timeout)
    if record.own_app:
        _check_metric(args.metric)
    verdict = None
    if args.winner:
        verdict = _compared(args)
    elif args.arm is None and args.trick is None:
        try:  # only for the note naming compare's winner: an export never fails for it
            verdict = _compared(args)
        except Exception:  # noqa: BLE001
            verdict = None
    if args.winner:
        assert verdict is not None
        arm, why, by = verdict
        if arm is None:
            raise ImbsweepError(f"--winner: study {args.study!r} has no winner yet: {why}")
        print(f"compare's winner: {arm}: {why}")
        args.arm, args.trick = (arm, None) if by == "arm" else (None, arm)
    out = Path(args.out) if args.out else user_conf_dir() / "best" if record.own_app else app_out_dir(record)
    done = write(record, out, args.metric, args.top_k, args.format, args.force, args.trick, args.arm)
    for e in done:
        scores = ", ".join(f"{m} {v:.4f}" for m, v in e.values)
        print(f"{e.path}: trial {e.trial} ({scores}), MLflow run {e.run_id}")
        if args.format == "yaml":
            again = reproduce_command(out, e.name) if record.own_app else \
                app_reproduce(record, out, e.name, e.deletions)
            print(f"  reproduce: {again}")
    if verdict is not None and not args.winner and verdict[0] is not None and done and done[0].arm != verdict[0]:
        arm, why, by = verdict
        print(f"note: this is the best validation trial of every {by} ({done[0].arm}); compare's winner is {arm} "
              f"({why}):\n  imbsweep export {args.study} --winner")
    return 0


def _compared(args: argparse.Namespace) -> tuple[str | None, str, str] | None:
    """The comparison's winner of the study (see ``Comparison.winner``), why, and whether it
    is an ``arm`` or a ``trick``; None when the study has no seed replicates to compare."""
    from .compare import compare as make
    from .names import ROLE_RESEED, TAG_ARM, TAG_ROLE
    from .results import load_study

    record = load_study(args.study, args.tracking_uri, args.state_dir, read_runs=False,
                        connect_timeout=args.connect_timeout)
    if not record.client.search_runs([record.experiment_id], f"tags.`{TAG_ROLE}` = '{ROLE_RESEED}'",
                                     max_results=1):
        return (None, f"no seed replicates yet (imbsweep compare {args.study} --reseed 5)", "arm") \
            if args.winner else None
    record = load_study(args.study, args.tracking_uri, args.state_dir, connect_timeout=args.connect_timeout)
    arms = f"tags.{TAG_ARM}" in record.trials.columns and bool(record.trials[f"tags.{TAG_ARM}"].notna().any())
    arm, why = make(record, args.metric).winner
    return arm, why, "arm" if arms else "trick"


def cache(args: argparse.Namespace) -> int:
    """``imbsweep cache``: the dataset cache's files, least recently used first, and their
    total against the bound; ``--clear`` deletes them (they are rebuilt when next used)."""
    from .data import DEFAULT_CACHE_MB, cache_entries, clear_disk_cache

    folder = state_dir(args.state_dir) / DATASETS
    if args.clear:
        n, size = clear_disk_cache(folder) if folder.is_dir() else (0, 0)
        print(f"dataset cache {folder}: removed {n} file(s), {size / 1e6:.1f} MB")
        return 0
    entries = cache_entries(folder) if folder.is_dir() else []
    import datetime as dt

    for e in entries:
        used = dt.datetime.fromtimestamp(e.last_used).isoformat(sep=" ", timespec="seconds")
        print(f"{e.size / 1e6:9.2f} MB  last used {used}  {e.path.name}")
    total = sum(e.size for e in entries)
    print(f"dataset cache {folder}: {len(entries)} file(s), {total / 1e6:.2f} MB (bound: dataset_cache_mb, "
          f"default {DEFAULT_CACHE_MB:g}; least recently used go first); imbsweep cache --clear empties it")
    return 0


def _store(p: argparse.ArgumentParser, many: bool = False) -> argparse.ArgumentParser:
    if many:
        p.add_argument("studies", nargs="+", metavar="STUDY",
                       help="the study's name (its MLflow experiment); several: the same arms compared across them "
                            "(one dataset each: mean ranks, the Friedman test, Wilcoxon over datasets)")
    else:
        p.add_argument("study", help="the study's name (its MLflow experiment)")
    p.add_argument("--metric", default=None, help="rank on this metric (default: the study's objective)")
    p.add_argument("--tracking-uri", default=None,
                   help="the MLflow store (default: $MLFLOW_TRACKING_URI, else the local store)")
    p.add_argument("--state-dir", default=STATE_DIR, help=f"local state folder (default {STATE_DIR})")
    p.add_argument("--connect-timeout", type=float, default=None, metavar="S",
                   help="seconds to wait for a tracking server to answer (default 8)")
    return p


def _server(p: argparse.ArgumentParser, port: int) -> argparse.ArgumentParser:
    """The options of the commands that start a local web server."""
    p.add_argument("--port", type=int, default=port)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--state-dir", default=STATE_DIR, help=f"local state folder (default {STATE_DIR})")
    return p


class _Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are one line too (``imbsweep: error: …``), exit code 2."""

    def error(self, message: str) -> Any:  # argparse's NoReturn
        say(f"error: {message} ({self.prog} --help lists the options)")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="imbsweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"imbsweep {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser("run", help="train once (Hydra overrides follow; -m for multirun)",
                       add_help=False)
    r.add_argument("overrides", nargs=argparse.REMAINDER)
    sw = sub.add_parser("sweep", help="run a study: ./sweeps/NAME.yaml, ./conf/sweep/NAME.yaml or imbsweep's "
                                      "(Hydra overrides follow)")
    sw.add_argument("name", help="a sweep file's name without .yaml (yours, or smoke, lr_batch, tricks, ...)")
    u = _server(sub.add_parser("ui", help="start the stock MLflow UI on the local store"), 5000)
    u.add_argument("--backend-store-uri", default=None,
                   help="another MLflow store (default: $MLFLOW_TRACKING_URI or the local one)")
    u.add_argument("--study", default=None, help="print the link that opens this study's runs")
    u.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    u.add_argument("--connect-timeout", type=float, default=None, metavar="S",
                   help="seconds to wait for the store's database server to answer (default 8)")
    d = _server(sub.add_parser("dashboard", help="start the stock optuna-dashboard on the sweeps' storage"), 8080)
    d.add_argument("--storage", default=None,
                   help="an Optuna storage URL or journal file (default: the local journal)")
    c = _store(sub.add_parser("compare", help="compare the arms of a study (or of several, across them): paired "
                                              "seeds, tests, verdicts, plots"), many=True)
    c.add_argument("--format", choices=("table", "csv", "md", "html"), default="table")
    c.add_argument("--wide", action="store_true",
                   help="the table with every column (trials, best trial, means, p, config); the default fits "
                        "the terminal: verdict, arm, Δ vs the baseline, p Holm, P(better), vs best")
    c.add_argument("--out", default=None, help="write the table (or the HTML report) to this file")
    c.add_argument("--reseed", type=int, default=None, metavar="K",
                   help="first re-run each arm's best configuration with trainer.seed = 1..K, the same seeds "
                        "in every arm (paired; child runs; seeds already done are skipped)")
    c.add_argument("--vary-split", action="store_true",
                   help="replicates also set data.seed = k (the same in every arm), so split variance enters "
                        "the intervals; compare then reads these replicates")
    c.add_argument("--top", type=int, default=None, metavar="N",
                   help="with --reseed: only the N best arms by validation, and the baseline")
    c.add_argument("--jobs", type=int, default=None, help="worker processes for --reseed (default: the sweep's n_jobs)")
    c.add_argument("--baseline", default=None,
                   help="the arm the others are tested against (default: the sweep's baseline_arm, else ce)")
    c.add_argument("--direction", choices=("maximize", "minimize"), default=None,
                   help="another app's --metric: whether more or less is better (default: minimize for a name "
                        "with loss, error, rmse, …, else maximize)")
    c.add_argument("--test", choices=("t", "wilcoxon"), default="t",
                   help="the paired test against the baseline: t (scipy ttest_rel, default) or wilcoxon "
                        "(signed-rank; needs >= 6 seeds to reach p < 0.05)")
    c.add_argument("--report-dir", default="reports", help="the report goes to REPORT_DIR/STUDY/ (default reports)")
    c.add_argument("--no-report", action="store_true", help="print the table only: no files, nothing logged")
    k = sub.add_parser("cache", help="list the dataset cache (mlruns/datasets), or empty it with --clear")
    k.add_argument("--clear", action="store_true", help="delete every cached dataset (rebuilt when next used)")
    k.add_argument("--state-dir", default=STATE_DIR, help=f"local state folder (default {STATE_DIR})")
    e = _store(sub.add_parser("export", help="write the best trial(s) as Hydra configs under ./conf/best/"))
    e.add_argument("--top-k", type=int, default=1, help="the K best trials (default 1)")
    e.add_argument("--out", default=None,
                   help="folder (default: ./conf/best, or $IMBSWEEP_CONF/best, where +best=STUDY finds it)")
    e.add_argument("--format", choices=("yaml", "json"), default="yaml")
    e.add_argument("--force", action="store_true", help="overwrite existing files")
    e.add_argument("--trick", default=None, help=f"only trials of this trick (its {TAG_TRICK} label)")
    e.add_argument("--arm", default=None, help=f"only trials of this arm of a tournament (its {TAG_ARM} tag)")
    e.add_argument("--winner", action="store_true",
                   help="the arm compare recommends (the best mean of those that beat the baseline on the paired "
                        "seeds, else the baseline; compare's defaults: the paired t-test, the sweep's baseline arm): "
                        "compare --reseed K first")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:  # everything after `run` is Hydra's, options included
        return run_hydra(argv[1:])
    if argv[:1] == ["sweep"] and len(argv) > 1 and not argv[1].startswith("-"):
        return run_hydra(["-m", f"sweep={argv[1]}", *argv[2:]], prog=f"imbsweep sweep {argv[1]}")
    if argv[:1] == ["suite"]:
        return suite(argv[1:])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, and usage errors (one line, code 2)
        return exc.code if isinstance(exc.code, int) else 0
    if args.command in ("compare", "export"):
        from .results import gc_paused

        # a reader that lives a few seconds: the cyclic GC's passes over what MLflow's imports
        # and its ORM create were ~10% of the command on top of search_all's own pause, and
        # freed nothing (same peak memory; bench/compare_scale.py). Not while --reseed runs.
        with gc_paused() if getattr(args, "reseed", None) is None else contextlib.nullcontext():
            return _study_command(compare if args.command == "compare" else export, args)
    if args.command == "cache":
        return cache(args)
    from .errors import ImbsweepError

    try:
        return dashboard(args) if args.command == "dashboard" else ui(args)
    except ImbsweepError as exc:  # a store that cannot be read (ui --study): one line
        say(f"error: {exc}")
        return exc.exit_code


def entry() -> None:
    """The ``imbsweep`` command (and ``python -m imbsweep``): ``main``, then exit."""
    try:
        code = main()
    except KeyboardInterrupt:  # before a command set up its own handling (still importing)
        # (nothing imported here: a Ctrl-C inside an import leaves that module half made, and
        # importing anything that needs it would raise from inside this handler)
        from .names import WORKER_ENV

        if not os.environ.get(WORKER_ENV):  # (a worker its sweep stops has nothing to say)
            say("interrupted")
        code = EXIT_INTERRUPTED
    # Python collects once more at exit, even with the GC disabled, walking every object
    # still alive (after compare on 1000 runs, ~100,000 MLflow entities): ~0.8 s of a 4 s
    # command. It skips frozen objects, which are still freed; atexit handlers still run.
    gc.freeze()
    # the command's work is recorded; a Ctrl-C now (a second one after an interrupt) ends the
    # process at once instead of a traceback from inside a library's atexit handler (torch's)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda *_: os._exit(code or EXIT_INTERRUPTED))
    sys.exit(code)


if __name__ == "__main__":
    entry()
