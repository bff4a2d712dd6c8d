"""The text of a sweep's jobs, as Hydra reads and writes it, at less cost per trial.

- :func:`simple_override`: what Hydra's override parser makes of ``key=value`` where the value
  is a plain number or word (``optimizer.lr=0.0031``, ``loss=focal``): the sweeper's sampled
  values are new text every trial, and Hydra's ANTLR parser takes ~0.4 ms for each one;
  anything else goes to that parser.
- :func:`save` and :class:`EntryText`: ``.hydra/*.yaml`` as Hydra's ``_save_config`` writes
  them (the text of ``OmegaConf.to_yaml``), dumped by libyaml with OmegaConf's quoting rule; a
  block mapping's text is its entries' texts one after another, so an entry whose config node
  is the same object as in an earlier job, unchanged, is not converted and dumped again.

``tests/sweep/test_jobs.py`` checks both against Hydra's own (parser, files).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
# what repr() writes for a float (0.0031, 12.0, 1e-05, 2.5e+16): Hydra's float too
_FLOAT = re.compile(r"-?(?:(?:0|[1-9][0-9]*)\.[0-9]+(?:e[+-][0-9]+)?|[1-9](?:\.[0-9]+)?e[+-][0-9]+)")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPECIAL = frozenset({"true", "false", "null", "nan", "inf"})  # Hydra's grammar reads these, any case


def simple_override(text: str) -> Any:
    """Hydra's ``Override`` of ``text`` when it is ``key=<number or word>``, else None."""
    key, sep, value = text.partition("=")
    if not sep or not _KEY.fullmatch(key):
        return None
    parsed: int | float | str
    if _INT.fullmatch(value):
        parsed = int(value)
    elif _FLOAT.fullmatch(value):
        parsed = float(value)
    elif _WORD.fullmatch(value) and value.lower() not in _SPECIAL:
        parsed = value
    else:
        return None
    from hydra.core.override_parser.types import Override, OverrideType, ValueType

    return Override(type=OverrideType.CHANGE, key_or_group=key, value_type=ValueType.ELEMENT, _value=parsed,
                    package=None, input_line=text)


class _Dumper(getattr(yaml, "CDumper", yaml.Dumper)):  # type: ignore[misc]
    """libyaml's emitter with OmegaConf's representers: ``OmegaConf.to_yaml``'s text, ~5x faster."""


def _represent_str(dumper: Any, data: str) -> Any:
    from omegaconf._utils import OmegaConfDumper

    return OmegaConfDumper.str_representer(dumper, data)


_Dumper.add_representer(str, _represent_str)


def dump(container: Any) -> str:
    return yaml.dump(container, default_flow_style=False, allow_unicode=True, sort_keys=False, Dumper=_Dumper)


def save(text: str, filename: str, folder: Path) -> None:
    """Hydra's ``_save_config``: the text of ``OmegaConf.to_yaml`` into ``folder/filename``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / filename).write_text(text, encoding="utf-8")


def container(node: Any) -> Any:
    """What Hydra's ``_save_config`` dumps of a config node."""
    return OmegaConf.to_container(node, resolve=False, enum_to_str=True)


def _value(node: Any) -> Any:
    """What ``container`` makes of a node (as OmegaConf's ``_to_content`` makes each entry)."""
    from enum import Enum

    from omegaconf import Container
    from omegaconf.basecontainer import BaseContainer

    if isinstance(node, Container):
        return BaseContainer._to_content(node, resolve=False, throw_on_missing=False, enum_to_str=True)
    value = node._value()
    return value.name if isinstance(value, Enum) else value


class EntryText:
    """The YAML text of a config's entries, each kept while its node stays the same object.

    ``text(parent, fresh, under)``: the text of ``container(parent)`` (nested under the key
    ``under`` when given, as ``hydra.yaml`` is), where the entries whose keys are in ``fresh``
    are converted and dumped anew and the others are taken from an earlier call that had the
    same node object at the same key: the caller keeps those nodes unchanged between jobs
    (nothing writes them: read-only while a job runs)."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str | None, str, int], tuple[Any, str]] = {}  # the node, kept: its id stays its own

    def text(self, parent: Any, fresh: Callable[[str], bool], under: str | None = None) -> str:
        parts = []
        for key in [str(k) for k in parent]:
            node = parent._get_node(key)
            keep = not fresh(key)
            kept = self._kept.get((under, key, id(node))) if keep else None
            if kept is not None:
                parts.append(kept[1])
                continue
            value = _value(node)
            text = dump({under: {key: value}} if under is not None else {key: value})
            if under is not None:
                text = text[len(under) + 2:]  # "hydra:\n": the entries' text follows it
            parts.append(text)
            if keep:
                self._kept[(under, key, id(node))] = (node, text)
        if not parts:
            return dump({under: {}} if under is not None else {})
        return (f"{under}:\n" if under is not None else "") + "".join(parts)


def has_null(value: Any) -> bool:
    """Whether a container (dicts, lists) holds a null anywhere."""
    if value is None:
        return True
    if isinstance(value, dict):
        return any(has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(has_null(v) for v in value)
    return False

