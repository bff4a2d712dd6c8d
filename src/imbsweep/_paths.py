"""Where things live: the Hydra config folder, the project root, the local state."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

from .names import DATASETS, JOURNAL, MLFLOW_DB, STATE_DIR

#: repository root of an editable install (src/imbsweep/_paths.py -> ../..)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def conf_dir() -> Path:
    """The primary Hydra config folder: ``$IMBSWEEP_CONF`` or the repository's ``conf/``."""
    env = os.environ.get("IMBSWEEP_CONF")
    return Path(env).resolve() if env else PROJECT_ROOT / "conf"


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
PATH_KEYS = (("data", "path"), ("model", "weights"))


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
    """(commit sha, dirty) of the project checkout, or (None, False) outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
            timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, False
    return sha, bool(dirty)
