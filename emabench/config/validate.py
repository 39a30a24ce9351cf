"""A parsed document → a validated :class:`Config`, or one :class:`~emabench.errors.ConfigError` line naming the
dotted key and what is allowed. (Apart from :mod:`emabench.config.load` so that :mod:`~emabench.config.overrides`,
which re-validates, and ``load``, which applies overrides, need not import each other.)

Pydantic's own words never reach the user where they mislead: a union's tag is not repeated in the key
(``averagers.swa.start_epoch``, not ``averagers.swa.swa.start_epoch``), a missing or unknown discriminator names the
entry and the allowed values, and each problem is blamed on where it came from — the file or the ``--set`` that
wrote the key. At most :data:`MAX_PROBLEMS` problems are listed, then "… and N more".
"""

from __future__ import annotations

import reprlib
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from emabench.config.keys import Slot, listed, walk_loc
from emabench.config.schema import Config
from emabench.errors import ConfigError, quoted

MAX_PROBLEMS = 5

# (the dotted key as the user wrote it, the --set text that wrote it) for each override applied
Blame = Sequence[tuple[Sequence[str], str]]

_short = reprlib.Repr()  # the offending value, quoted in a few dozen characters however big it is
_short.maxstring, _short.maxother, _short.maxlevel, _short.maxdict, _short.maxlist = 60, 60, 2, 4, 6


def validate_config(raw: Any, source: str = "config", overrides: Blame = ()) -> Config:
    """Validate a parsed document into a :class:`Config`, or raise one :class:`ConfigError` line.

    ``overrides`` are the ``--set`` keys applied to ``raw`` (:func:`~emabench.config.overrides.apply_overrides`):
    a problem under one of them is blamed on that ``--set``, not on ``source``."""
    if raw is None:
        raise ConfigError(f"{source}: the file is empty; expected a mapping of settings")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level, got {type(raw).__name__}")
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, overrides)) from None


def format_validation_error(
    err: ValidationError, source: str = "", overrides: Blame = (), root: type[BaseModel] = Config
) -> str:
    """One line for all of ``err``'s problems, each prefixed by what to blame (``source`` or a ``--set``)."""
    problems: list[tuple[str, str]] = []
    unknown: dict[tuple[str, ...], tuple[Slot, list[str]]] = {}  # by section: 200k unknown keys make one phrase
    for error in err.errors(include_url=False):
        parts, slot = walk_loc(error["loc"], root)
        if error["type"] == "extra_forbidden" and parts:
            parent = walk_loc(error["loc"][:-1], root)[1]
            unknown.setdefault(tuple(parts[:-1]), (parent, []))[1].append(parts[-1])
            continue
        problems.append((_blame(parts, source, overrides), _describe(error, parts, slot)))
    for section, (parent, names) in reversed(unknown.items()):
        problems.insert(0, (_blame([*section, names[0]], source, overrides), _unknown(section, parent, names)))
    shown = []
    for blame, text in problems[:MAX_PROBLEMS]:
        same = shown and shown[-1][0] == blame
        shown.append((blame, text if same or not blame else f"{blame}: {text}"))
    line = "; ".join(text for _, text in shown)
    return line + (f"; … and {len(problems) - MAX_PROBLEMS:,} more problems" if len(problems) > MAX_PROBLEMS else "")


def _blame(parts: Sequence[str], source: str, overrides: Blame) -> str:
    """The last ``--set`` whose key is a prefix of ``parts`` or lies under it, else ``source`` (with every
    ``--set`` for a check of the whole config, whose message names the keys involved)."""
    for key, text in reversed(overrides):
        common = min(len(key), len(parts))
        if common and list(key[:common]) == list(parts[:common]):
            return f"--set {quoted(text)}"
    if not parts and overrides:
        return f"{source} with {listed((f'--set {quoted(text, 60)}' for _, text in overrides), limit=5)}"
    return source


def _describe(error: Any, parts: list[str], slot: Slot) -> str:
    key = ".".join(parts).encode("unicode_escape").decode("ascii")  # one line, always
    kind = error["type"]
    message = error["msg"].removeprefix("Value error, ")
    if not key:  # a whole-config check: its message names the keys involved
        return message
    if kind == "missing":
        return f"{key}: missing required key"
    if kind in ("union_tag_not_found", "union_tag_invalid") and slot.discriminator:
        return _tag_problem(key, slot, error.get("input"))
    if kind in ("model_attributes_type", "model_type", "dict_type") and slot.is_section:
        return f"{key}: expected a mapping of settings{_tag_hint(slot)}, got {_got(error.get('input'))}"
    if kind == "value_error":  # our validators already quote the offending value
        return f"{key}: {message}"
    return f"{key}: {message} (got {_short.repr(error.get('input'))})"


def _tag_problem(key: str, slot: Slot, value: Any) -> str:
    """A missing or unknown discriminator (``kind`` of an averager, ``source`` of the data, ...)."""
    name, allowed = slot.discriminator, listed(slot.tags)
    tag = value.get(name) if isinstance(value, dict) else None
    if not isinstance(value, dict):
        return f"{key}: expected a mapping of settings with its {name} (one of: {allowed}), got {_got(value)}"
    if tag is None:
        return f"{key}: missing {name!r} (one of: {allowed})"
    return f"{key}.{name}: unknown {name} {_short.repr(tag)} (allowed: {allowed})"


def _tag_hint(slot: Slot) -> str:
    return f" with its {slot.discriminator} (one of: {listed(slot.tags)})" if slot.discriminator else ""


def _got(value: Any) -> str:
    return f"{type(value).__name__} {_short.repr(value)}" if value is not None else "nothing (null)"


def _unknown(section: tuple[str, ...], parent: Slot, names: list[str]) -> str:
    """``model.dropuot: unknown key (allowed: ...)``, or many unknown keys of one section in one phrase."""
    keys = parent.keys()
    allowed = f" (allowed: {listed(keys)})" if keys else ""
    escaped = [n.encode("unicode_escape").decode("ascii") for n in names]
    if len(names) == 1:
        return f"{'.'.join([*section, escaped[0]])}: unknown key{allowed}"
    where = ".".join(section) or "the top level"
    return f"{where}: unknown keys {listed((_short.repr(n) for n in escaped), limit=10)}{allowed}"
