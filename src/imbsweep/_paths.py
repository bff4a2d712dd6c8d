"""Where things live: imbsweep's configs and the user's, the project root, the local state."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

from .names import DATASETS, JOURNAL, MLFLOW_DB, STATE_DIR

#: the source checkout's root when imbsweep runs from one (src/imbsweep/_paths.py -> ../..; an
#: installed wheel's is only site-packages' parent: see :func:`git_commit`)
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: the configs imbsweep ships (package data): the primary config ``config.yaml``, its groups and
#: the group ``sweep``; Hydra reads them as the config source ``pkg://imbsweep.conf``
PACKAGE_CONF = Path(__file__).resolve().parent / "conf"
CONFIG_MODULE = f"{__package__}.conf"  # imbsweep.conf
#: the user's sweep files in the working folder (the group ``sweep``, as ``conf/sweep/`` is too)
USER_SWEEPS = "sweeps"
def user_conf_dir() -> Path:
    """The user's own config folder, searched ahead of imbsweep's configs and where ``export``
    writes (``best/``): ``$IMBSWEEP_CONF``, else ``conf/`` in the working folder (absolute)."""
    env = os.environ.get("IMBSWEEP_CONF")
    return Path(env or "conf").expanduser().resolve()


def user_folders() -> tuple[Path | None, Path | None]:
    """The user's folders that Hydra searches ahead of imbsweep's own configs (the plugin
    ``hydra_plugins.imbsweep_searchpath``), in that order: the config folder
    (:func:`user_conf_dir`) and ``./sweeps/`` (the group ``sweep``); None for one that does not
    exist or is imbsweep's own (the repository's ``sweeps``, a link to the package's)."""
    conf, sweeps = user_conf_dir(), Path(USER_SWEEPS).resolve()
    own = PACKAGE_CONF.resolve()
    return (conf if conf.is_dir() and conf != own else None,
            sweeps if sweeps.is_dir() and sweeps != own / "sweep" else None)


def state_dir(configured: str | os.PathLike[str] | None = STATE_DIR) -> Path:
    """The local state folder, relative to the launch directory unless absolute (unset or
    empty: :data:`~imbsweep.names.STATE_DIR`)."""
    return Path(configured or STATE_DIR).expanduser().resolve()


def state_of(cfg: Any) -> Path:
    """The local state folder a composed config names (``state_dir``)."""
    return state_dir(cfg.get("state_dir"))


def cache_dir(cfg: Any) -> Path:
    """The on-disk dataset cache of a composed config's state folder."""
    return state_of(cfg) / DATASETS


def journal_path(state: Path) -> Path:
    """The default Optuna storage: the journal file in the state folder."""
    return state / JOURNAL


#: config keys that name a local file or folder (group, key): recorded as absolute paths, so that
#: an exported or re-run config finds them from any folder
PATH_KEYS = (("data", "path"), ("data", "root"), ("model", "weights"))


def absolute_paths(container: dict[str, Any]) -> None:
    """Make the :data:`PATH_KEYS` of a resolved config (plain containers) absolute, in place,
    relative to the launch folder as the run read them."""
    for group, key in PATH_KEYS:
        node = container.get(group)
        value = node.get(key) if isinstance(node, dict) else None
        if isinstance(value, str) and value not in ("", "???"):
            node[key] = str(Path(value).expanduser().resolve())  # type: ignore[index]


def local_tracking_uri(state: Path) -> str:
    """MLflow on SQLite inside the state folder."""
    return f"sqlite:///{state / MLFLOW_DB}"


@functools.lru_cache(maxsize=1)
def git_commit() -> tuple[str | None, bool]:
    """(commit sha, dirty) of imbsweep's source checkout, or (None, False) when imbsweep is
    installed from a wheel (no ``pyproject.toml`` above it: a git repository that merely holds the
    environment is not imbsweep's) or runs outside git."""
    if not (PROJECT_ROOT / "pyproject.toml").is_file():
        return None, False
    sha = git_commit_of(str(PROJECT_ROOT))
    if sha is None:
        return None, False
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, False
    return sha, bool(dirty)


@functools.cache
def git_commit_of(folder: str) -> str | None:
    """The commit of the git checkout ``folder`` is in (a user's app), None outside one."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
