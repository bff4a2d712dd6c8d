"""A sweep job's logging, as Hydra's basic launcher sets it up around each job, without
configuring Python's logging anew twice a job (see :class:`JobLogging`)."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf


class JobLogging:
    """Hydra's ``configure_log`` for each job (``hydra.job_logging``: the console and the job's
    log file) and back to the sweep's (``hydra.hydra_logging``) after it, as the basic
    launcher does, without a ``logging.config.dictConfig`` each time: a configuration met
    before is put back as it was left (each logger's handlers, level, propagation), its file
    handlers pointed at the new job's files. Only for configurations that leave other loggers
    alone (``disable_existing_loggers: false``, not incremental); any other is configured by
    Hydra each time."""

    def __init__(self, master: DictConfig) -> None:
        self.master = master
        self._states: dict[str, tuple[list[tuple[Any, list[Any], int, bool, bool]], dict[str, Any]]] = {}

    def sweep(self) -> None:
        self.configure(self.master.hydra.hydra_logging, self.master.hydra.verbose)

    def configure(self, log_config: DictConfig | None, verbose: Any) -> None:
        """What ``hydra.core.utils.configure_log(log_config, verbose)`` does."""
        import json
        import logging

        from hydra.core.utils import configure_log

        conf = OmegaConf.to_container(log_config, resolve=True) if log_config is not None else None
        file_confs = {name: h for name, h in (conf.get("handlers") or {}).items()
                      if isinstance(h, dict) and "filename" in h} if isinstance(conf, dict) else {}
        files = {name: os.path.abspath(str(h["filename"])) for name, h in file_confs.items()}
        # a file truncated or opened late, or two handlers on one file: as Hydra does it, each time
        cacheable = isinstance(conf, dict) and conf.get("root") is not None and not conf.get("incremental") \
            and conf.get("disable_existing_loggers", True) is False and len(set(files.values())) == len(files) \
            and all(h.get("mode", "a") == "a" and not h.get("delay") for h in file_confs.values())
        if not cacheable:
            configure_log(log_config, verbose)  # type: ignore[arg-type]
            return
        assert isinstance(conf, dict) and log_config is not None
        shape = json.loads(json.dumps(conf, default=str))
        for name in files:
            shape["handlers"][name]["filename"] = ""
        verbose_c = OmegaConf.to_container(verbose) if OmegaConf.is_config(verbose) else verbose
        key = json.dumps([shape, verbose_c], sort_keys=True, default=str)
        names = [None, *(conf.get("loggers") or {}), *([verbose_c] if isinstance(verbose_c, str) else
                                                       verbose_c if isinstance(verbose_c, list) else [])]
        known = self._states.get(key)
        if known is None:
            configure_log(log_config, verbose)
            loggers = [logging.getLogger(n) for n in dict.fromkeys(names)]
            state = [(lg, list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers]
            handlers = {h.baseFilename: h for _, hs, *_ in state for h in hs if isinstance(h, logging.FileHandler)}
            self._states[key] = (state, {name: handlers.get(path) for name, path in files.items()})
            return
        state, file_handlers = known
        configured = set(conf.get("loggers") or {})
        # what dictConfig does to the loggers it does not configure (disable_existing_loggers: false)
        for name, other in logging.Logger.manager.loggerDict.items():
            if not isinstance(other, logging.Logger) or name in configured:
                continue
            if any(name.startswith(c + ".") for c in configured):
                if other.level != logging.NOTSET:  # (each setLevel clears every logger's cache)
                    other.setLevel(logging.NOTSET)
                other.handlers = []
                other.propagate = True
            else:
                other.disabled = False
        for lg, hs, level, propagate, disabled in state:
            lg.handlers[:] = hs
            if lg.level != level:
                lg.setLevel(level)
            lg.propagate, lg.disabled = propagate, disabled
        for name, h in file_handlers.items():
            if h is not None and h.baseFilename != files[name]:  # this job's file (created as FileHandler does)
                h.acquire()
                try:
                    h.close()
                    h.baseFilename = files[name]
                    h.stream = None if h.delay else h._open()
                finally:
                    h.release()
