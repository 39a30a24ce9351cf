"""The default config: what a config that gives only the required keys resolves to, every default written out.

``emabench configs --defaults`` prints :func:`default_config_text`: the YAML of that config, each required key
marked ``# required`` (with an example value) and each key that takes one of a few values followed by them, so the
text is both a reference and a config that loads as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal, get_args, get_origin

from emabench.config.keys import Slot, listed, slot_at
from emabench.config.schema import Config
from emabench.config.validate import validate_config
from emabench.config.yaml_io import dump_yaml

# The keys without a default, at example values: everything else a config may leave out.
REQUIRED: dict[str, Any] = {
    "name": "my-study",
    "train": {"max_epochs": 100, "optimizer": {"name": "adam", "lr": 1.0e-3}},
}

_HEADER = """\
# Every key of a config with its default: a config needs only the keys marked `required` (here at example values);
# whatever it leaves out takes the value below. Other data sources and models have keys of their own (a CSV file's
# path and target, a custom model's factory, ...): see docs/configs.md. A run folder's config.yaml always holds
# every value.
"""

_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w.-]*):")


def default_config() -> Config:
    """The config of :data:`REQUIRED` alone: every other key at its default."""
    return validate_config(REQUIRED, "the default config")


def required_keys() -> list[tuple[str, ...]]:
    """The dotted keys of :data:`REQUIRED` (each a required key)."""
    return list(_leaves(REQUIRED, ()))


def default_config_text() -> str:
    """:func:`default_config` as commented YAML (see the module docstring)."""
    required = set(required_keys())
    lines, path = [], []
    for line in dump_yaml(default_config().to_dict()).splitlines():
        match = _KEY_LINE.match(line)
        if match is None:
            lines.append(line)
            continue
        depth = len(match["indent"]) // 2
        path = [*path[:depth], match["key"]]
        choices = _choices(path)
        note = "; ".join(part for part in ("required" if tuple(path) in required else "", choices) if part)
        lines.append(f"{line}  # {note}" if note else line)
    return _HEADER + "\n".join(lines) + "\n"


def _leaves(tree: dict[str, Any], prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key)


def _choices(path: list[str]) -> str:
    """``one of: a, b, c`` for a key that takes one of a few names (a union's tag or a ``Literal``), else ``""``."""
    parent = slot_at(path[:-1])
    if parent is None:
        return ""
    names = _tag_names(parent, path[-1]) or _literal_names(parent, path[-1])
    return f"one of: {listed(names)}" if len(names) > 1 else ""


def _tag_names(parent: Slot, key: str) -> list[str]:
    """The values of ``key`` where it is the discriminator of the union at ``parent`` (``data.source``)."""
    return list(parent.tags) if parent.discriminator == key else []


def _literal_names(parent: Slot, key: str) -> list[str]:
    for model in parent.models:
        info = model.model_fields.get(key)
        if info is not None:
            annotation = info.annotation
            if get_origin(annotation) is Literal:
                return [str(value) for value in get_args(annotation)]
    return []
