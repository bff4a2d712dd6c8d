"""What a sweep is, as plain data (:class:`Tournament`): its study, its arms with their spaces
and budgets (a plain study is one arm without a name), the baseline, the post-hoc arms, the
objectives. Made once by :func:`plan` from the settings, the config and the app; the loop
(``_runner``) and the checks (``_checks``) read it, and nothing changes it but the loop's
studies (``Arm.study``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from ._arms import Arm, baseline_arm, build_arms, config_defaults, posthoc_arms
from ._space import SearchSpace
from ._study import grid_size

if TYPE_CHECKING:
    from ._app import App
    from ._settings import Settings

log = logging.getLogger(__name__)

#: a plain study's budget when ``n_trials`` is not given (the official sweeper's default)
DEFAULT_TRIALS = 20


@dataclass
class Tournament:
    """A sweep's study: one Optuna study per arm (``<study>/<arm>``), or one without arms.

    Attributes:
        study_name: the study's (the tournament's) name.
        arms: the arms in the sweep file's order, each with its space, budget and defaults; a
            plain study has one, named None.
        objectives: ``[(metric, direction), …]``: what every trial returns.
        baseline: a plain study's first trial (``{}``: the config's defaults for what is
            searched; values to start from), None for none; a tournament's first trial of each
            arm is the config's defaults unless this is None.
        baseline_arm: the arm the others are compared with (a tournament).
        posthoc_arms: post-hoc arm -> the trained arm it re-scores.
        posthoc_kinds: post-hoc arm -> what re-scores it (``posthoc`` or ``taunorm``).
    """

    study_name: str
    arms: list[Arm]
    objectives: list[tuple[str, str]]
    baseline: dict[str, Any] | None
    baseline_arm: str | None = None
    posthoc_arms: dict[str, str] = field(default_factory=dict)
    posthoc_kinds: dict[str, str] = field(default_factory=dict)

    @property
    def has_arms(self) -> bool:
        """A tournament (named arms), not a plain study."""
        return self.arms[0].name is not None

    @property
    def n_trials(self) -> int:
        """Every arm's budget together: the trials the sweep finishes."""
        return sum(a.budget for a in self.arms)


def plan(settings: Settings, config: DictConfig, arguments: Sequence[str], config_loader: Any, app: App,
         study_name: str) -> Tournament:
    """The sweep's :class:`Tournament`: the arms of ``hydra.sweeper.arms`` (each checked against
    the config as it is built), or one arm searching ``params`` (a grid's budget capped at its
    size)."""
    baseline = settings.baseline_values(app.own)
    if settings.tournament:
        arms = build_arms(settings, config, list(arguments), config_loader, study_name)
        post, kinds = posthoc_arms(settings.posthoc_arms, arms, app.objectives, app.own)
        return Tournament(study_name, arms, list(app.objectives), baseline,
                          baseline_arm(settings.baseline_arm, arms), post, kinds)
    space = SearchSpace.build(settings.params, settings.conditional, list(arguments))
    n_trials = DEFAULT_TRIALS if settings.n_trials is None else settings.n_trials
    if settings.sampler_name == "grid":
        cap = grid_size(space) + (0 if baseline is None else 1)
        if n_trials > cap:
            log.warning("the grid has %d points%s: n_trials %d lowered to %d", cap - (baseline is not None),
                        " (+ the baseline)" if baseline is not None else "", n_trials, cap)
            n_trials = cap
    choices = OmegaConf.select(config, "hydra.runtime.choices", default={}) or {}
    arm = Arm(None, study_name, space, n_trials, defaults=config_defaults(config, choices, list(space.names())))
    return Tournament(study_name, [arm], list(app.objectives), baseline)


__all__ = ["DEFAULT_TRIALS", "Tournament", "plan"]
