"""``--set KEY=VALUE`` overrides: dotted keys checked against the schema, values read as YAML."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from emabench.config.fields import field_names, field_type, is_mapping, sections
from emabench.config.schema import Config
from emabench.config.validate import validate_config
from emabench.config.yaml_io import parse_yaml
from emabench.errors import ConfigError


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.optimizer.lr=0.01"`` → ``(["train", "optimizer", "lr"], 0.01)``; the value is a YAML scalar."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. train.optimizer.lr=0.01")
    path = key.split(".")
    _check_key_path(path, text)
    return path, parse_yaml(raw, f"--set {key}") if raw.strip() else None


def _check_key_path(path: list[str], text: str) -> None:
    models: list[type[BaseModel]] = [Config]
    for depth, part in enumerate(path):
        names = field_names(models)
        if part not in names:
            where = ".".join(path[:depth]) or "the top level"
            allowed = ", ".join(names) or "nothing (not a section)"
            raise ConfigError(f"--set {text!r}: unknown key {part!r} in {where} (allowed: {allowed})")
        annotation = field_type(models, part)
        if is_mapping(annotation):
            return  # a mapping of named entries (averagers): the validation of the whole config checks the rest
        models = sections(annotation)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``KEY=VALUE`` override set (sections are created as needed)."""
    result = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    return result


def with_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """A copy of ``config`` with dotted-key values replaced, validated again."""
    raw = config.to_dict()
    for key, value in overrides.items():
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return validate_config(raw)
