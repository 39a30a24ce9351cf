"""``--set KEY=VALUE`` overrides: dotted keys checked against the schema (through named entries and unions, see
:mod:`emabench.config.keys`), values read as YAML. Every error names the option and the whole text the user gave."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from emabench.config.keys import Slot, listed, root_slot
from emabench.config.schema import Config
from emabench.config.validate import Blame, validate_config
from emabench.config.yaml_io import parse_yaml
from emabench.errors import ConfigError, quoted


def parse_override(text: str, option: str = "--set", root: type[BaseModel] = Config) -> tuple[list[str], Any]:
    """``"train.optimizer.lr=0.01"`` → ``(["train", "optimizer", "lr"], 0.01)``; the value is a YAML scalar.
    Errors are blamed on ``option`` with the whole ``text`` (``--set 'ema.betta=0.9': unknown key ...``)."""
    key, _, raw = text.partition("=")
    blame = f"{option} {quoted(text)}"
    if "=" not in text:
        raise ConfigError(f"{blame}: expected KEY=VALUE with a dotted key, e.g. train.optimizer.lr=0.01")
    path = check_key(key, option, text, root)
    return path, parse_yaml(raw, blame) if raw.strip() else None


def check_key(key: str, option: str, text: str, root: type[BaseModel] = Config) -> list[str]:
    """The parts of a dotted config ``key``, or a :class:`ConfigError` blamed on ``option`` and the whole ``text``
    the user gave it (``--grid 'train.optimizer.lrr=0.1,0.2': unknown key 'lrr' ...``), naming the first unknown
    part and what is allowed there."""
    blame = f"{option} {quoted(text)}"
    key = key.strip()
    if not key:
        raise ConfigError(f"{blame}: no key before '=' (expected a dotted config key, e.g. train.optimizer.lr)")
    path = key.split(".")
    _check_key_path(path, blame, root)
    return path


def _check_key_path(path: list[str], blame: str, root: type[BaseModel] = Config) -> None:
    """Each part must be a field of the section above it (of any member, where that is a union), or any name
    under named entries (``averagers.<name>``)."""
    slot: Slot = root_slot(root)
    for depth, part in enumerate(path):
        child = slot.child(part)
        if child is None:
            where = ".".join(path[:depth]) or "the top level"
            allowed = listed(slot.keys()) or "nothing (not a section)"
            raise ConfigError(f"{blame}: unknown key {part!r} in {where} (allowed: {allowed})")
        slot = child


def apply_overrides(
    raw: dict[str, Any], overrides: list[str], source: str = "the config", root: type[BaseModel] = Config
) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``KEY=VALUE`` override set (sections are created as needed)."""
    return applied_overrides(raw, overrides, source, root)[0]


def applied_overrides(
    raw: dict[str, Any], overrides: Sequence[str], source: str = "the config", root: type[BaseModel] = Config
) -> tuple[dict[str, Any], Blame]:
    """:func:`apply_overrides`, plus each override's key path with its text (to blame validation errors on).

    Setting a field of a named entry that ``source`` does not have (``--set averagers.swa.start_epoch=30``
    without an averager ``swa``) creates the entry, which then needs its discriminator (``kind``) too: said here,
    in the words of the ``--set``, rather than as a validation error of the merged config."""
    result = copy.deepcopy(raw)
    blame: list[tuple[list[str], str]] = []
    created: dict[tuple[str, ...], tuple[str, Slot, list[str]]] = {}
    for text in overrides:
        path, value = parse_override(text, root=root)
        node, slot = result, root_slot(root)
        for depth, part in enumerate(path[:-1]):
            entries = slot.entries
            if entries is not None and entries.discriminator and part not in _section(raw, path[:depth]):
                created.setdefault(tuple(path[: depth + 1]), (text, entries, list(_section(raw, path[:depth]))))
            slot = slot.child(part) or Slot()
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
        blame.append((path, text))
    for prefix, (text, entries, existing) in created.items():
        entry = _section(result, list(prefix))
        if entry and entries.discriminator not in entry:
            raise ConfigError(_no_such_entry(prefix, text, entries, existing, source))
    return result, blame


def _section(raw: Any, path: Sequence[str]) -> dict[str, Any]:
    """The mapping at ``path`` in ``raw`` (empty where there is none)."""
    node = raw
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _no_such_entry(prefix: tuple[str, ...], text: str, entries: Slot, existing: list[str], source: str) -> str:
    *parents, name = prefix
    noun = entries.entry_noun(parents[-1]) if parents else "entry"
    key, tag = entries.discriminator, name if name in entries.tags else entries.discriminator.upper()
    there = f"{noun}s in {source}: {listed(existing)}" if existing else f"{source} has none"
    return (
        f"--set {quoted(text)}: no {noun} {name!r} exists ({there}); a new one needs its {key} too: "
        f"add --set {'.'.join(prefix)}.{key}={tag} (allowed {key}s: {listed(entries.tags)})"
    )


def with_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """A copy of ``config`` with dotted-key values replaced, validated again (on the config as given:
    :meth:`Config.spec_dict`)."""
    raw = config.spec_dict()
    for key, value in overrides.items():
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = copy.deepcopy(value)  # a later key must not change the caller's own dict
    return validate_config(raw)
