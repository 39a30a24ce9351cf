"""A parsed document → a validated :class:`Config`, or one :class:`~emabench.errors.ConfigError` line naming the
dotted key and what is allowed. (Apart from :mod:`emabench.config.load` so that :mod:`~emabench.config.overrides`,
which re-validates, and ``load``, which applies overrides, need not import each other.)"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from emabench.config.fields import clean_location, field_names
from emabench.config.schema import Config
from emabench.errors import ConfigError


def validate_config(raw: Any, source: str = "config") -> Config:
    """Validate a parsed document into a :class:`Config`, or raise one :class:`ConfigError` line."""
    if raw is None:
        raise ConfigError(f"{source}: the file is empty; expected a mapping of settings")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level, got {type(raw).__name__}")
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: {format_validation_error(err)}") from None


def format_validation_error(err: ValidationError) -> str:
    return "; ".join(_describe(e) for e in err.errors(include_url=False))


def _describe(error: Any) -> str:
    loc, _ = clean_location(Config, error["loc"])
    key = ".".join(str(part) for part in loc).encode("unicode_escape").decode("ascii")  # one line, always
    kind = error["type"]
    if not key:  # a whole-config check: its message names the keys involved
        return error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        _, parents = clean_location(Config, loc[:-1])
        allowed = f" (allowed: {', '.join(field_names(parents))})" if parents else ""
        return f"{key}: unknown key{allowed}"
    if kind == "missing":
        return f"{key}: missing required key"
    message = error["msg"].removeprefix("Value error, ")
    if kind == "value_error":  # our validators already quote the offending value
        return f"{key}: {message}"
    return f"{key}: {message} (got {error.get('input')!r})"
