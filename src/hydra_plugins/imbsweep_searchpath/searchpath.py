"""imbsweep's Hydra search-path plugin and the config source of a folder of sweep files.

:class:`UserConfigs` puts the user's folders (:func:`imbsweep._paths.user_folders`) ahead of
imbsweep's configs in the search path of imbsweep's app only (the app whose ``main`` config
source is ``pkg://imbsweep.conf``: ``imbsweep run``/``sweep``, the compose API on
``imbsweep.conf``); any other Hydra app's search path is left as it is. Hydra's own
``--config-dir`` and ``hydra.searchpath`` work as always, after these.

:class:`SweepsFolder` (scheme ``imbsweep-sweeps://``) shows a folder of sweep files
(``./sweeps/NAME.yaml``) as the group ``sweep``, so ``sweep=NAME`` finds them as it finds
``conf/sweep/NAME.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf

#: imbsweep's configs (``imbsweep._paths.CONFIG_MODULE``), spelt here: Hydra's plugin scan, which
#: every Hydra app runs, imports no imbsweep module
CONFIG_MODULE = "imbsweep.conf"
GROUP = "sweep"
#: the providers of the user's folders in the search path (``hydra.runtime.config_sources``)
CONF_PROVIDER, SWEEPS_PROVIDER = "imbsweep-user-conf", "imbsweep-user-sweeps"


def _is_imbsweeps(path: str) -> bool:
    """Whether a search-path entry is imbsweep's configs (``pkg://imbsweep.conf`` or ``…/conf``)."""
    return path.startswith("pkg://") and path[len("pkg://"):].replace("/", ".").strip(".") == CONFIG_MODULE


class UserConfigs(SearchPathPlugin):
    """The user's folders ahead of imbsweep's configs, in imbsweep's app only (see the module)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not any(e.provider == "main" and _is_imbsweeps(e.path) for e in search_path.get_path()):
            return
        from imbsweep._paths import user_folders

        conf, sweeps = user_folders()
        ahead = SearchPathQuery(provider="main")  # each just before imbsweep's: conf, then sweeps, then ours
        if conf is not None:
            search_path.prepend(CONF_PROVIDER, f"file://{conf}", anchor=ahead)
        if sweeps is not None:
            search_path.prepend(SWEEPS_PROVIDER, f"{SweepsFolder.scheme()}://{sweeps}", anchor=ahead)


class SweepsFolder(ConfigSource):
    """A folder of ``NAME.yaml`` files as the group ``sweep`` (``sweep/NAME``); nothing else."""

    @staticmethod
    def scheme() -> str:
        return "imbsweep-sweeps"

    def _file(self, config_path: str) -> Path | None:
        group, _, name = config_path.strip("/").rpartition("/")
        if group != GROUP or not name:
            return None
        return Path(self.path) / self._normalize_file_name(name)

    def load_config(self, config_path: str) -> ConfigResult:
        file = self._file(config_path)
        if file is None or not file.is_file():
            raise ConfigLoadError(f"Config not found : {file or config_path}")
        with file.open(encoding="utf-8") as f:  # (a YAML error names the file, as in Hydra's file source)
            header = self._get_header_dict(f.read(512))  # (a ConfigSource's own helper, as Hydra's sources use it)
            f.seek(0)
            return ConfigResult(config=OmegaConf.load(f), path=self.full_path(), provider=self.provider,
                                header=header)

    def available(self) -> bool:
        return Path(self.path).is_dir()

    def is_group(self, config_path: str) -> bool:
        return config_path.strip("/") in ("", GROUP) and self.available()

    def is_config(self, config_path: str) -> bool:
        file = self._file(config_path)
        return file is not None and file.is_file()

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        where = config_path.strip("/")
        if where == "" and results_filter in (None, ObjectType.GROUP):
            return [GROUP] if self.available() else []
        if where != GROUP or results_filter == ObjectType.GROUP or not self.available():
            return []
        return sorted(p.stem for p in Path(self.path).glob("*.yaml") if p.is_file())
