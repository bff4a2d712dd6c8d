"""``hydra.sweeper``'s settings as one typed object, validated once.

The keys are declared in one place, the plugin's config dataclass
(``hydra_plugins.imbsweep_optuna_sweeper.config.ImbsweepOptunaSweeperConf``, what Hydra
composes ``hydra.sweeper`` from); :class:`Settings` is that dataclass (a subclass adding the
settings as given, and the checks): :meth:`Settings.of` fills a key a caller left out from its
default, so no module restates a key or a default. :meth:`Settings.validate` checks what needs no
config, data or store (the rest is ``_checks.preflight``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from omegaconf import OmegaConf

from hydra_plugins.imbsweep_optuna_sweeper.config import ImbsweepOptunaSweeperConf

from ..constraints import BOOLEAN, NULL, TEXT, Constraint, Interval, check, plain, validate
from ..errors import ConfigError

#: keys that only a tournament (``arms``) takes
ARM_KEYS = ("trials_per_arm", "baseline_arm", "posthoc_arms")
#: the plugin config's keys that are Hydra's, not settings
_NOT_SETTINGS = ("_target_", "_recursive_", "defaults")
DIRECTIONS = ("minimize", "maximize")


@dataclasses.dataclass
class Settings(ImbsweepOptunaSweeperConf):
    """The sweeper's settings: the plugin's config dataclass itself (every key declared once,
    with its default and its docstring there), holding plain Python values, validated once."""

    # (a mapping here: the plugin's typed sampler configs, as plain values)
    sampler: dict[str, Any] = dataclasses.field(default_factory=dict)  # type: ignore[assignment]
    raw: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)  # as given (the parent run logs it)

    #: what the settings with a plain type take (constraints as data; the others are checked below)
    _parameter_constraints: ClassVar[Mapping[str, Sequence[Constraint]]] = {
        "reproducible": [BOOLEAN],
        "heartbeat_interval": [Interval(int, 1, None), NULL],
        "storage": [TEXT, NULL],
        "max_failure_rate": [Interval(float, 0, 1)],
        "n_jobs": [Interval(int, 1, None)],
        "workers_per_gpu": [Interval(int, 1, None), NULL],
        "n_trials": [Interval(int, 1, None), NULL],
        "trials_per_arm": [Interval(int, 1, None), NULL],
        "seed_key": [TEXT, NULL], "custom_search_space": [TEXT, NULL], "state_dir": [TEXT, NULL],
        "tracking_uri": [TEXT, NULL],
    }

    @classmethod
    def of(cls, conf: Mapping[str, Any]) -> Settings:
        """The settings in ``conf`` (the sweeper's config, or a plain mapping holding some of
        its keys: the others take the plugin config's defaults), as plain Python values."""
        given: dict[str, Any] = {str(k): plain(v) for k, v in conf.items() if str(k) not in _NOT_SETTINGS}
        values: dict[str, Any] = {f.name: given[f.name] if f.name in given else _default(f.name)
                                  for f in dataclasses.fields(cls) if f.name not in ("raw", *_NOT_SETTINGS)}
        for key in ("sampler", "pruner", "conditional", "arms", "posthoc_arms"):
            if values[key] is None:  # written as null: an empty mapping (a sampler or pruner by its own defaults)
                values[key] = {}
        return cls(**values, raw={k: v for k, v in given.items() if k != "trial"})

    @property
    def tournament(self) -> bool:
        return bool(self.arms)

    def directions(self) -> list[str] | None:
        """``direction`` as a list (None: not given). Raises ConfigError for anything but
        minimize/maximize (the official plugin's ``Direction`` names)."""
        d = self.direction
        if d is None:
            return None
        many = isinstance(d, Sequence) and not isinstance(d, str)
        out = [str(getattr(x, "name", x)) for x in (d if many else [d])]
        if not out or any(x not in DIRECTIONS for x in out):
            raise ConfigError("hydra.sweeper.direction", d, "must be minimize or maximize, or a list of them "
                              "(one per value the task function returns)")
        return out

    def validate(self) -> None:
        """What Optuna would take and fail on later (or never), each a one-line error."""
        validate(type(self), {f: getattr(self, f) for f in self._parameter_constraints}, "hydra.sweeper")
        seed = self.sampler.get("seed") if isinstance(self.sampler, Mapping) else None
        check("hydra.sweeper.sampler.seed", seed, [Interval(int, None, None), NULL])
        if self.reproducible and seed is None:
            raise ConfigError("hydra.sweeper.reproducible", True, "needs a sampler seed: set "
                              "hydra.sweeper.sampler.seed to an integer (it is null)")
        directions = self.directions()
        names = self.objective_names
        if names is not None:
            if not names or any(not isinstance(n, str) or not n.strip() for n in names) or len(set(names)) < len(names):
                raise ConfigError("hydra.sweeper.objective_names", names, "must be a list of distinct non-empty names")
            from ..names import mlflow_name_ok

            bad = [n for n in names if not mlflow_name_ok(n)]
            if bad:
                raise ConfigError("hydra.sweeper.objective_names", names,
                                  f"{', '.join(bad)}: an MLflow metric's name holds letters, digits, _ - . : space and "
                                  "/ (not at its ends, not twice in a row)")
            if directions is not None and len(names) != len(directions):
                raise ConfigError("hydra.sweeper.objective_names", names,
                                  f"must name each of the {len(directions)} direction(s) {directions}")
        check_study_name(self.study_name)
        if self.baseline not in ("auto", None) and not isinstance(self.baseline, Mapping):
            raise ConfigError("hydra.sweeper.baseline", self.baseline,
                              "must be auto, {} (the config's defaults), {key: value, …}, or null (no baseline)")
        if self.tournament:
            self._validate_tournament()
            return
        for key in ARM_KEYS:
            if getattr(self, key) not in (None, {}):
                raise ConfigError(f"hydra.sweeper.{key}", getattr(self, key), "needs hydra.sweeper.arms")

    def _validate_tournament(self) -> None:
        arms = self.arms
        if not isinstance(arms, Mapping):
            raise ConfigError("hydra.sweeper.arms", arms, "must map an arm's name to the values it fixes")
        if self.trials_per_arm is None:
            raise ConfigError("hydra.sweeper.trials_per_arm", None,
                              "must be an integer >= 1 with hydra.sweeper.arms (every arm's budget)")
        per_arm = self.trials_per_arm
        n = self.n_trials
        if n is not None and n != per_arm * len(arms):
            raise ConfigError("hydra.sweeper.n_trials", n,
                              f"must be unset (null) or {len(arms)} arms x trials_per_arm {per_arm} = "
                              f"{per_arm * len(arms)} in a tournament; set trials_per_arm instead")
        if self.baseline not in ("auto", None) and self.baseline:
            raise ConfigError("hydra.sweeper.baseline", self.baseline,
                              "must be auto, {} or null with hydra.sweeper.arms: each arm's first trial is the "
                              "config's defaults for what the arm does not fix (null: no such trials)")
        if self.sampler_name == "grid":
            raise ConfigError("hydra/sweeper/sampler", "grid", "cannot run a tournament; use tpe or random")

    @property
    def sampler_name(self) -> str | None:
        """The sampler's short name (``tpe``, ``grid``, …) from its ``_target_``, None for
        another class."""
        from hydra_plugins.imbsweep_optuna_sweeper.config import SAMPLER_CONFIGS

        target = self.sampler.get("_target_") if isinstance(self.sampler, Mapping) else None
        for name, node in SAMPLER_CONFIGS.items():
            if node._target_ == target:
                return name
        return None

    def baseline_values(self, own_app: bool) -> dict[str, Any] | None:
        """The first trial's values (``{}``: the config's defaults), None for none: ``auto`` is
        on for imbsweep's app and in a tournament, off for a plain study of another app."""
        if self.baseline == "auto":
            return {} if own_app or self.tournament else None
        return None if self.baseline is None else dict(self.baseline)


STUDY_NAME_MAX = 100  # characters: a study's name goes into file names with more around it


def check_study_name(name: Any) -> None:
    """``hydra.sweeper.study_name``: null (the sweep file's or the app's name), else a name of at
    most :data:`STUDY_NAME_MAX` characters without ``/`` (``<study>/<arm>`` names an arm's
    study: ``a/b`` could take over arm ``b`` of tournament ``a``), control characters or
    surrounding spaces."""
    if name is None:
        return
    text = str(name)
    if not isinstance(name, str | int) or isinstance(name, bool) or not text.strip() or text != text.strip() \
            or "/" in text or len(text) > STUDY_NAME_MAX or any(ord(c) < 32 for c in text):
        shown = text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"
        raise ConfigError("hydra.sweeper.study_name", shown,
                          f"must be a non-empty name of at most {STUDY_NAME_MAX} characters, without '/' (it "
                          "separates a tournament's arms), control characters or surrounding spaces")


def _default(name: str) -> Any:
    """The plugin config's default for ``name`` (an interpolation, such as the storage's
    ``${oc.env:OPTUNA_STORAGE,null}``, resolved); the sampler's is the default group option's
    (``tpe``)."""
    from hydra_plugins.imbsweep_optuna_sweeper.config import TPESamplerConfig

    if name == "sampler":
        return OmegaConf.to_container(OmegaConf.structured(TPESamplerConfig))
    field = next(f for f in dataclasses.fields(ImbsweepOptunaSweeperConf) if f.name == name)
    value = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    if isinstance(value, str) and "${" in value:
        return OmegaConf.create({"v": value}).v
    return value
