"""``hydra.sweeper``'s settings as one typed object, validated once.

The defaults are written in one place, the plugin's config dataclass
(``hydra_plugins.imbsweep_optuna_sweeper.config.ImbsweepOptunaSweeperConf``, what Hydra
composes ``hydra.sweeper`` from); :meth:`Settings.of` fills a key a caller left out from
there, so no module restates a default. :meth:`Settings.validate` checks what needs no
config, data or store (the rest is ``_checks.preflight``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf

from ..errors import ConfigError

#: keys that only a tournament (``arms``) takes
ARM_KEYS = ("trials_per_arm", "baseline_arm", "posthoc_arms")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The sweeper's settings (see the plugin config's docstring for each key)."""

    study_name: str | None
    storage: str | None
    n_trials: int | None
    n_jobs: int
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    params: dict[str, Any]
    conditional: dict[str, Any]
    baseline: dict[str, Any] | None
    max_failure_rate: float
    heartbeat_interval: int | None
    arms: dict[str, Any]
    trials_per_arm: int | None
    baseline_arm: str | None
    posthoc_arms: dict[str, Any]
    raw: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)  # as given (the parent run logs it)

    @classmethod
    def of(cls, conf: Mapping[str, Any]) -> Settings:
        """The settings in ``conf`` (the sweeper's config, or a plain mapping holding some of
        its keys: the others take the plugin config's defaults), as plain Python values."""
        given: dict[str, Any] = {str(k): OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                                 for k, v in conf.items()}
        values: dict[str, Any] = {f.name: given[f.name] if f.name in given else _default(f.name)
                                  for f in dataclasses.fields(cls) if f.name != "raw"}
        for key in ("sampler", "pruner", "params", "conditional", "arms", "posthoc_arms"):
            if values[key] is None:  # written as null: an empty mapping (a sampler or pruner by its own defaults)
                values[key] = {}
        return cls(**values, raw=given)

    @property
    def tournament(self) -> bool:
        return bool(self.arms)

    def validate(self) -> None:
        """What Optuna would take and fail on later (or never), each a one-line error."""
        sampler, seed = self.sampler, None
        if isinstance(sampler, Mapping):
            seed = sampler.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError("hydra.sweeper.sampler.seed", seed, "must be an integer, or null for a random seed")
        beat = self.heartbeat_interval
        if beat is not None and (isinstance(beat, bool) or not isinstance(beat, int) or beat < 1):
            raise ConfigError("hydra.sweeper.heartbeat_interval", beat,
                              "must be an integer >= 1 (seconds between heartbeats on RDB storages), or null for none")
        if self.storage is not None and not isinstance(self.storage, str):
            raise ConfigError("hydra.sweeper.storage", self.storage,
                              "must be an Optuna storage URL or a journal file's path")
        rate = self.max_failure_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ConfigError("hydra.sweeper.max_failure_rate", rate, "must be in [0, 1]")
        if isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, int) or self.n_jobs < 1:
            raise ConfigError("hydra.sweeper.n_jobs", self.n_jobs, "must be an integer >= 1")
        if self.tournament:
            self._validate_tournament()
            return
        for key in ARM_KEYS:
            if getattr(self, key) not in (None, {}):
                raise ConfigError(f"hydra.sweeper.{key}", getattr(self, key), "needs hydra.sweeper.arms")
        if self.n_trials is not None:
            positive_int("hydra.sweeper.n_trials", self.n_trials)

    def _validate_tournament(self) -> None:
        arms = self.arms
        if not isinstance(arms, Mapping):
            raise ConfigError("hydra.sweeper.arms", arms, "must map an arm's name to the values it fixes")
        if self.trials_per_arm is None:
            raise ConfigError("hydra.sweeper.trials_per_arm", None,
                              "must be an integer >= 1 with hydra.sweeper.arms (every arm's budget)")
        per_arm = positive_int("hydra.sweeper.trials_per_arm", self.trials_per_arm)
        n = self.n_trials
        if n is not None and n != per_arm * len(arms):
            raise ConfigError("hydra.sweeper.n_trials", n,
                              f"must be unset (null) or {len(arms)} arms x trials_per_arm {per_arm} = "
                              f"{per_arm * len(arms)} in a tournament; set trials_per_arm instead")
        if self.baseline:
            raise ConfigError("hydra.sweeper.baseline", self.baseline,
                              "must be {} or null with hydra.sweeper.arms: each arm's first trial is the "
                              "config's defaults for what the arm does not fix (null: no such trials)")
        if self.sampler_name == "grid":
            raise ConfigError("hydra.sweeper.sampler.name", "grid", "cannot run a tournament; use tpe or random")

    @property
    def sampler_name(self) -> Any:
        return self.sampler.get("name") if isinstance(self.sampler, Mapping) else None


def positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, value, "must be an integer >= 1")
    return value


def _default(name: str) -> Any:
    """The plugin config's default for ``name`` (an interpolation, such as the storage's
    ``${oc.env:OPTUNA_STORAGE,null}``, resolved)."""
    from hydra_plugins.imbsweep_optuna_sweeper.config import ImbsweepOptunaSweeperConf

    field = next(f for f in dataclasses.fields(ImbsweepOptunaSweeperConf) if f.name == name)
    value = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    if isinstance(value, str) and "${" in value:
        return OmegaConf.create({"v": value}).v
    return value
