"""The schema as a tree of keys: which sections a dotted key may pass through, unions of sections included.

``data`` and ``model`` are discriminated unions (by ``source`` and ``name``), and ``averagers`` a mapping of a union
(by ``kind``): a key is valid under such a field when any member section has it. pydantic reports errors inside a
union with the member's tag in the location (``model.mlp.dropout``); :func:`clean_location` takes it out.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel


def sections(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic sections a field of this type may hold (unwrapping ``Annotated``, ``Optional`` and unions)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return sections(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [s for arg in typing.get_args(annotation) for s in sections(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def is_mapping(annotation: Any) -> bool:
    """A ``dict[str, …]`` field: a mapping of named entries (``averagers``)."""
    origin = typing.get_origin(annotation)
    return origin is dict or (origin is typing.Annotated and is_mapping(typing.get_args(annotation)[0]))


def mapping_values(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    return args[1] if len(args) == 2 else Any


def field_names(models: list[type[BaseModel]]) -> list[str]:
    """Every key any of ``models`` takes, in order of first appearance."""
    names: dict[str, None] = {}
    for model in models:
        names.update(dict.fromkeys(model.model_fields))
    return list(names)


def field_type(models: list[type[BaseModel]], name: str) -> Any:
    """The annotation of ``name`` in the first of ``models`` that has it (members of one union agree on it)."""
    for model in models:
        if name in model.model_fields:
            return model.model_fields[name].annotation
    return None


def clean_location(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], list[type[BaseModel]]]:
    """``loc`` without the union tags pydantic inserts, and the sections the last key is looked up in."""
    models, clean = [root], []
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        clean.append(part)
        annotation = field_type(models, str(part))
        if annotation is None:
            return tuple(clean + parts), []
        if is_mapping(annotation):
            if not parts:
                return tuple(clean), []
            clean.append(parts.pop(0))  # the entry's name
            annotation = mapping_values(annotation)
        models = sections(annotation)
        if len(models) > 1 and parts and all(str(parts[0]) not in m.model_fields for m in models):
            parts.pop(0)  # the discriminator's value pydantic puts in the location
    return tuple(clean), models
