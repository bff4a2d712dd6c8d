"""``imbsweep export STUDY``: the best trial(s) as Hydra configs that reproduce them.

``conf/best/<study>.yaml`` is a ``_global_`` config of the group ``best``, so
``imbsweep run +best=<study>`` composes it on top of the defaults. Its defaults list picks
the group options the trial was composed from (the ``imbsweep.choice.<group>`` tags), then
its body sets every value where the trial's resolved config (its ``config.yaml`` artifact)
differs from what those options compose to today. The environment is left out (``tracking``,
``state_dir``), so no credential or local path of the sweep's machine lands in the file.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ImbsweepError
from .names import COMPLETE, TAG_ARM, TAG_CHOICE, TAG_STATE, TAG_TRICK
from .results import StudyError, StudyRecord, choices_of, download_text

#: not exported: the environment of the machine that ran the sweep, and the sweep itself
SKIP_KEYS = ("tracking", "state_dir", "dataset_cache_mb", "hydra", "imbsweep_trial")
SKIP_GROUPS = ("tracking", "sweep", "best")
#: the defaults list's order in conf/config.yaml (other groups follow)
GROUP_ORDER = ("data", "model", "loss", "resampling", "augment", "stage2", "optimizer", "scheduler", "trainer")


@dataclass
class Exported:
    path: Path
    name: str
    trial: int
    run_id: str
    values: list[tuple[str, float]]
    deletions: list[str] = field(default_factory=list)  # another app's ``~key`` overrides (not in the file)
    arm: str = ""  # the trial's arm (its trick in a study without arms)


def pareto_front(df: Any, objectives: list[tuple[str, str]]) -> Any:
    """The rows no other row dominates (at least as good on every objective, better on one)."""
    import numpy as np

    signs = np.array([1.0 if d == "minimize" else -1.0 for _, d in objectives])
    x = df[[f"metrics.{m}" for m, _ in objectives]].to_numpy(dtype=float) * signs
    keep = [not any(np.all(x[j] <= x[i]) and np.any(x[j] < x[i]) for j in range(len(x)) if j != i)
            for i in range(len(x))]
    return df[keep]


def select(record: StudyRecord, metric: str | None, top_k: int, trick: str | None,
           arm: str | None = None) -> tuple[Any, list[tuple[str, str]]]:
    """The complete trials to export, best first, and the objective(s) they were ranked on
    (only those of ``trick`` / of ``arm`` when given). A single objective asks MLflow for the
    best ``top_k`` only; a multi-objective study (no ``metric`` given) reads its complete
    trials and exports their Pareto front."""
    from .results import ranked_trials

    if top_k < 1:
        raise ImbsweepError(f"--top-k={top_k}: must be an integer >= 1")
    if not record.complete:
        raise StudyError(f"study {record.name!r} has no complete trial to export (all were pruned or failed)")
    names = [m for m, _ in record.objectives]
    if not record.own_app and metric is not None and metric not in names:
        raise StudyError(f"--metric={metric!r}: study {record.name!r}'s trials are picked on what they returned "
                         f"({', '.join(names)}), never on another metric their app logged (it may be a test one)")
    if metric is None and len(record.objectives) > 1:  # a multi-objective study: its Pareto front
        objectives = record.objectives
        cols = [f"metrics.{m}" for m, _ in objectives]
        trials = ranked_trials(record, objectives[0][0], objectives[0][1], 10**9, trick, arm).dropna(subset=cols)
        _check_trick(record, trials, trick, arm)
        front = pareto_front(trials, objectives)
        return front.sort_values(cols[0], ascending=objectives[0][1] == "minimize"), objectives
    m, d = record.metric_direction(metric)
    source = record.posthoc_arms.get(arm) if arm is not None else None
    if source is not None:  # a post-hoc arm: its source's trials, ranked on their post-hoc values
        suffix = "_" + record.posthoc_kinds[str(arm)]
        arm, m = source, m if m.endswith(suffix) else f"{m}{suffix}"
    ranked = ranked_trials(record, m, d, top_k, trick, arm)
    _check_trick(record, ranked, trick, arm)
    if ranked.empty:
        raise StudyError(f"--metric={m!r}: no complete trial of study {record.name!r} logged it")
    return ranked, [(m, d)]


def _check_trick(record: StudyRecord, found: Any, trick: str | None, arm: str | None = None) -> None:
    """No trial found for ``--trick`` / ``--arm``: an error listing the values that exist."""
    if (trick is None and arm is None) or not found.empty:
        return
    flt = f"tags.`{TAG_STATE}` = '{COMPLETE}'"
    runs = record.client.search_runs([record.experiment_id], flt, max_results=1000)
    option, value, tag = ("--arm", arm, TAG_ARM) if arm is not None else ("--trick", trick, TAG_TRICK)
    known = sorted({str(r.data.tags.get(tag)) for r in runs if tag in r.data.tags}
                   | (set(record.posthoc_arms) if arm is not None else set()))
    raise StudyError(f"{option}={value!r}: no complete trial of study {record.name!r} used it; "
                     f"{option[2:]}s: {', '.join(known) or 'none (a study without arms: use --trick)'}")


def safe_name(name: str) -> str:
    """A study name as a Hydra option name / file stem."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "study"


class DefaultsComposer:
    """What the primary config composes to with given group options (resolved); one Hydra
    initialisation for all the exported trials, one composition per distinct set of options."""

    def __init__(self) -> None:
        self._cache: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        self._ctx: Any = None

    def __call__(self, choices: Mapping[str, str]) -> dict[str, Any]:
        from hydra import compose, initialize_config_module
        from hydra.core.global_hydra import GlobalHydra
        from omegaconf import OmegaConf

        from ._paths import CONFIG_MODULE

        key = tuple(sorted(choices.items()))
        if key not in self._cache:
            if self._ctx is None:
                GlobalHydra.instance().clear()
                # imbsweep's configs and the user's folders ahead of them, as `imbsweep run` composes
                self._ctx = initialize_config_module(CONFIG_MODULE, version_base="1.3")
                self._ctx.__enter__()
            cfg = compose("config", overrides=[f"{g}={o}" for g, o in choices.items()])
            out = OmegaConf.to_container(cfg, resolve=True)
            assert isinstance(out, dict)
            self._cache[key] = {str(k): v for k, v in out.items()}
        return self._cache[key]

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None


def diff(run: Mapping[str, Any], default: Mapping[str, Any]) -> dict[str, Any]:
    """The nested values of ``run`` that differ from (or are missing in) ``default``."""
    out: dict[str, Any] = {}
    for k, v in run.items():
        if k in SKIP_KEYS:
            continue
        d = default.get(k, _MISSING)
        if isinstance(v, Mapping) and v and isinstance(d, Mapping):
            sub = diff(v, d)
            if sub:
                out[k] = sub
        elif d is _MISSING or v != d or type(v) is not type(d):
            out[k] = v
    return out


_MISSING = object()


def file_header(record: StudyRecord, r: Any, scores: Sequence[tuple[str, float]],
                objectives: Sequence[tuple[str, str]], run: str, reproduce: str) -> list[str]:
    """An exported file's first lines: the study, the trial and its ``scores`` (one per
    objective), its run, when, and the command that runs it again."""
    shown = ", ".join(f"{m} = {v:.6g} ({d})" for (m, v), (_, d) in zip(scores, objectives, strict=True))
    return [f"imbsweep export: study {record.name}, trial {int(r['trial'])}, {shown}",
            f"{arm_words(r)}{run} (experiment id {record.experiment_id})",
            f"exported {dt.datetime.now().astimezone().isoformat(timespec='seconds')}; reproduce: {reproduce}"]


def render_yaml(header: list[str], choices: Mapping[str, str], values: Mapping[str, Any]) -> str:
    """A ``_global_`` config: ``choices`` in its defaults list (a group ``+g`` that the primary
    config does not list is added, the others overridden), ``values`` in its body."""
    from omegaconf import OmegaConf

    lines = ["# @package _global_", *(f"# {h}" for h in header)]
    lines.append("defaults:")
    lines += [f"  - /{g[1:]}: {o}" if g.startswith("+") else f"  - override /{g}: {o}" for g, o in choices.items()]
    lines.append("  - _self_")
    body = OmegaConf.to_yaml(OmegaConf.create(dict(values))) if values else ""
    return "\n".join(lines) + "\n\n" + body


def reproduce_command(out_dir: Path, name: str) -> str:
    """``imbsweep run +best=NAME`` for the user's ``conf/best`` (found from the working folder,
    or wherever ``$IMBSWEEP_CONF`` names it); another folder joins Hydra's search path."""
    from ._paths import user_conf_dir

    if out_dir.resolve() == (user_conf_dir() / "best").resolve():
        return f"imbsweep run +best={name}"
    return f"imbsweep run --config-dir {out_dir.resolve().parent} +{out_dir.name}={name}"


def export(record: StudyRecord, out_dir: Path, metric: str | None = None, top_k: int = 1,
           fmt: str = "yaml", force: bool = False, trick: str | None = None, arm: str | None = None) -> list[Exported]:
    """Write the selected trials (see ``select``); nothing is written when any target exists
    without ``force`` or a trial cannot be exported."""
    if fmt not in ("yaml", "json"):
        raise ImbsweepError(f"--format={fmt!r}: must be one of yaml, json")
    rows, objectives = select(record, metric, top_k, trick, arm)
    multi = len(objectives) > 1
    stem = safe_name(record.name)
    planned: list[tuple[Path, str, Any]] = []
    for rank, (_, r) in enumerate(rows.iterrows(), start=1):
        # trial numbers count within an arm of a tournament: the arm is part of the name
        tagged = r.get(f"tags.{TAG_ARM}")
        which = f"{safe_name(str(tagged))}_trial" if isinstance(tagged, str) else "trial"
        name = f"{stem}_{which}{int(r['trial'])}" if multi else (stem if rank == 1 else f"{stem}_{rank}")
        planned.append((out_dir / f"{name}.{fmt}", name, r))
    existing = [str(p) for p, _, _ in planned if p.exists()]
    if existing and not force:
        raise ImbsweepError(f"{', '.join(existing)}: already exists; pass --force to overwrite")
    composer = DefaultsComposer()
    try:
        render = _render if record.own_app else _render_app
        rendered = [render(record, path, name, r, objectives, composer, fmt, out_dir) for path, name, r in planned]
    finally:
        composer.close()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for path, content, _ in rendered:
            path.write_text(content)
    except OSError as exc:
        raise ImbsweepError(f"--out={str(out_dir)!r}: cannot write there ({exc.strerror or exc})") from None
    return [e for _, _, e in rendered]


def arm_words(r: Any) -> str:
    """``arm focal, `` for a tournament's trial, nothing otherwise."""
    tagged = r.get(f"tags.{TAG_ARM}")
    return f"arm {tagged}, " if isinstance(tagged, str) else ""


def _render(record: StudyRecord, path: Path, name: str, r: Any, objectives: list[tuple[str, str]],
            composer: DefaultsComposer, fmt: str, out_dir: Path) -> tuple[Path, str, Exported]:
    """One trial's file content."""
    import yaml as pyyaml

    run_id = str(r["run_id"])
    text = download_text(record.client, run_id, "config.yaml")
    if text is None:
        raise ImbsweepError(f"run {run_id} (trial {r['trial']}) has no config.yaml artifact "
                            "(tracking.artifacts=false?): it cannot be exported")
    config = pyyaml.safe_load(text)
    choices = choices_of(r)
    choices = {g: choices[g] for g in sorted(choices, key=lambda g: (
        GROUP_ORDER.index(g) if g in GROUP_ORDER else len(GROUP_ORDER), g)) if g not in SKIP_GROUPS}
    if not choices:
        raise ImbsweepError(f"run {run_id} (trial {r['trial']}) has no {TAG_CHOICE}* tags (recorded by "
                            "an older imbsweep): its config groups are unknown; re-run the sweep")
    values = diff(config, composer(choices))
    scores = [(m, float(r[f"metrics.{m}"])) for m, _ in objectives]
    header = file_header(record, r, scores, objectives, f"trick {r['trick']}; MLflow run {run_id}",
                         reproduce_command(out_dir, name))
    from .posthoc import POSTHOC_KINDS

    for kind, what in POSTHOC_KINDS.items():
        if objectives[0][0].endswith(f"_{kind}"):
            tau = r.get(f"metrics.{kind}/tau")
            header.append(f"{what} on this config's model (tau {float(tau):g} here, picked on validation in "
                          f"every run): a run of it reports the arm's value as val/test *_{kind}")
    if fmt == "yaml":
        content = render_yaml(header, choices, values)
    else:
        content = json.dumps({"study": record.name, "trial": int(r["trial"]), "run_id": run_id,
                              "trick": r["trick"], "arm": r["arm"], "objectives": [
                                  {"metric": m, "direction": d, "value": v}
                                  for (m, v), (_, d) in zip(scores, objectives, strict=True)],
                              "choices": choices, "values": values}, indent=2) + "\n"
    return path, content, Exported(path, name, int(r["trial"]), run_id, scores, arm=str(r.get("arm", "")))


def app_out_dir(record: StudyRecord) -> Path:
    """Where ``export`` writes for a study of another app: ``best/`` in the app's primary config
    folder (so that ``+best=NAME`` finds it), else ``best/`` in the working folder."""
    from .compare._replay import app_command

    try:
        folder = app_command(record).get("config_dir")
    except StudyError:
        folder = None
    return Path(folder) / "best" if folder else Path("best")


def app_reproduce(record: StudyRecord, out_dir: Path, name: str, deletions: list[str]) -> str:
    """The app's command that re-runs an exported trial: its program and config flags, the
    export folder on Hydra's search path where it is not the primary config's, ``+best=NAME``."""
    import shlex

    from .compare._replay import app_command

    try:
        command = app_command(record)
    except StudyError:
        return f"<your app> --config-dir {out_dir.resolve().parent} +{out_dir.name}={name}"
    program = ["python", *command["program"][1:]]
    argv = list(command["argv"])
    flags = []
    for i, a in enumerate(argv):  # the flags that pick the primary config and its search path
        if a in ("-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir") and i + 1 < len(argv):
            flags += [a, argv[i + 1]]
        elif a.startswith(("--config-path=", "--config-name=", "--config-dir=")):
            flags.append(a)
    primary = command.get("config_dir")
    if not primary or out_dir.resolve().parent != Path(primary).resolve():
        if any(f in ("-cd", "--config-dir") or f.startswith("--config-dir=") for f in flags):
            # (one --config-dir only: the export's folder joins the search path instead)
            flags.append(f"hydra.searchpath=[file://{out_dir.resolve().parent}]")
        else:
            flags += ["--config-dir", str(out_dir.resolve().parent)]
    return " ".join(shlex.quote(x) for x in [*program, *flags, f"+{out_dir.name}={name}", *deletions])


def _hydra_only(folder: Path | None, group: str, option: str) -> bool:
    """Whether the option file ``<folder>/<group>/<option>.yaml`` sets nothing but Hydra's
    settings (a sweep file: not part of the trial's config); False when it cannot be read."""
    import yaml as pyyaml

    if folder is None:
        return False
    try:
        content = pyyaml.safe_load((folder / group / f"{option}.yaml").read_text())
    except (OSError, pyyaml.YAMLError):
        return False
    if not isinstance(content, dict):
        return False
    defaults = [d for d in content.get("defaults") or [] if not (isinstance(d, dict) and any(
        str(k).removeprefix("override ").lstrip("/").startswith("hydra/") for k in d))]
    return not defaults and set(content) <= {"defaults", "hydra"}


def _render_app(record: StudyRecord, path: Path, name: str, r: Any, objectives: list[tuple[str, str]],
                composer: DefaultsComposer, fmt: str, out_dir: Path) -> tuple[Path, str, Exported]:
    """One trial of another app: its job's overrides (``overrides.yaml``) as a ``_global_``
    config: group options in its defaults list, values in its body; a deletion (``~key``)
    cannot be written in a config and joins the command that re-runs it."""
    import yaml as pyyaml
    from hydra.core.override_parser.overrides_parser import OverridesParser

    run_id = str(r["run_id"])
    text = download_text(record.client, run_id, "overrides.yaml")
    if text is None:
        raise ImbsweepError(f"run {run_id} (trial {r['trial']}) has no overrides.yaml artifact: it cannot be exported")
    groups = choices_of(r)
    choices: dict[str, str] = {}
    values: dict[str, Any] = {}
    deletions: list[str] = []
    folder = app_out_dir(record).parent if app_out_dir(record).name == "best" else None
    from .sweep._userrun import hidden

    recorded = [str(x) for x in pyyaml.safe_load(text) or []]
    secret = [o for o in recorded if hidden(o)]  # (recorded hidden: a credential on the command line)
    for o in OverridesParser.create().parse_overrides([o for o in recorded if not hidden(o)]):
        key = str(o.key_or_group)
        if o.is_delete():
            deletions.append(str(o.input_line))
        elif (key if o.package is None else f"{key}@{o.package}") in groups and isinstance(o.value(), str):
            if not _hydra_only(folder, key, str(o.value())):  # (+sweep=tournament: the sweep's settings)
                group = key if o.package is None else f"{key}@{o.package}"
                choices[("+" if o.is_add() else "") + group] = str(o.value())
        else:
            node = values
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = o.value()
    scores = [(m, float(r[f"metrics.{m}"])) for m, _ in objectives]
    header = file_header(record, r, scores, objectives, f"MLflow run {run_id}",
                         app_reproduce(record, out_dir, name, deletions))
    if secret:
        header.append(f"not written: {', '.join(o.partition('=')[0] for o in secret)} (credentials on the command "
                      "line are not recorded: give them through the environment)")
    if fmt == "yaml":
        content = render_yaml(header, choices, values)
    else:
        content = json.dumps({"study": record.name, "trial": int(r["trial"]), "run_id": run_id, "arm": r["arm"],
                              "objectives": [{"metric": m, "direction": d, "value": v}
                                             for (m, v), (_, d) in zip(scores, objectives, strict=True)],
                              "choices": choices, "values": values, "deletions": deletions}, indent=2) + "\n"
    return path, content, Exported(path, name, int(r["trial"]), run_id, scores, deletions, str(r.get("arm", "")))
