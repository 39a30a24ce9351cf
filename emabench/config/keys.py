"""The schema as a tree of dotted keys, through named entries and unions — what ``--set`` and the one-line
validation errors need to know about a place in the config.

A :class:`Slot` is what may sit at one place: one or more pydantic models (several for a union — a discriminated
union such as ``Annotated[A | B, Field(discriminator="kind")]`` knows its discriminator and which tag picks which
member), named entries (``dict[str, X]``, e.g. ``averagers``), list items, or a plain value. Written for any such
annotation, so that ``data`` by ``source`` and ``model`` by ``name`` work as ``averagers`` by ``kind`` does.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Discriminator, Tag
from pydantic.fields import FieldInfo

from emabench.config.schema import Config

MAX_LISTED = 30  # names listed in one message before "… and N more"


@dataclass(frozen=True)
class Slot:
    """What may sit at one place of the config (see the module docstring)."""

    models: tuple[type[BaseModel], ...] = ()
    discriminator: str | None = None  # the key that picks the member of a discriminated union
    tags: dict[str, type[BaseModel]] = field(default_factory=dict)  # discriminator value → member
    entries: Slot | None = None  # dict[str, X]: any name, each an X
    items: Slot | None = None  # list[X]

    @property
    def is_section(self) -> bool:
        return bool(self.models or self.entries)

    def keys(self) -> list[str]:
        """The keys allowed here: the fields of every member, in order, each once."""
        return list(dict.fromkeys(name for model in self.models for name in model.model_fields))

    def child(self, key: str) -> Slot | None:
        """The slot under ``key`` (any member's field of that name, or a named entry); ``None`` if not allowed."""
        found = [field_slot(m.model_fields[key]) for m in self.models if key in m.model_fields]
        if self.entries is not None:
            found.append(self.entries)
        return _merge(found) if found else None

    def member(self, label: Any) -> Slot | None:
        """The member a union's tag (or pydantic's class-name label) in an error location picks, else ``None``."""
        if len(self.models) < 2 or not isinstance(label, str):
            return None
        if label in self.tags:
            return Slot(models=(self.tags[label],))
        named = [m for m in self.models if m.__name__ == label]
        return Slot(models=(named[0],)) if named else None

    def entry_noun(self, key: str) -> str:
        """What one entry under ``key`` is called in a message: ``averagers`` → ``averager``."""
        return key.removesuffix("s") if key.endswith("s") and len(key) > 1 else f"{key} entry"


def root_slot(root: type[BaseModel] = Config) -> Slot:
    return Slot(models=(root,))


def field_slot(info: FieldInfo) -> Slot:
    """The slot of a model field, with a field-level discriminator (``Field(discriminator=...)``) applied."""
    discriminator = _discriminator_name(info.discriminator)
    for meta in info.metadata:
        discriminator = discriminator or _discriminator_name(meta)
    return slot_of(info.annotation, discriminator)


def slot_of(annotation: Any, discriminator: str | None = None) -> Slot:
    """The slot of a type annotation (``Annotated``, ``X | None``, unions, ``dict``, ``list`` and models)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *metadata = get_args(annotation)
        for meta in metadata:
            discriminator = discriminator or _discriminator_name(meta)
        return slot_of(inner, discriminator)
    if origin in (Union, types.UnionType):
        members = [slot_of(arg) for arg in get_args(annotation) if arg is not type(None)]
        merged = _merge(members)
        return _with_tags(merged, get_args(annotation), discriminator) if len(merged.models) > 1 else merged
    if origin is dict or origin is typing.Mapping:
        args = get_args(annotation)
        return Slot(entries=slot_of(args[1]) if len(args) == 2 else Slot())
    if origin in (list, tuple, set, frozenset) or origin is Sequence:
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return Slot(items=_merge([slot_of(a) for a in args]) if args else Slot())
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return Slot(models=(annotation,))
    return Slot()


def _discriminator_name(meta: Any) -> str | None:
    if isinstance(meta, str):
        return meta
    if isinstance(meta, FieldInfo):
        return _discriminator_name(meta.discriminator)
    if isinstance(meta, Discriminator) and isinstance(meta.discriminator, str):
        return meta.discriminator
    return None


def _with_tags(slot: Slot, members: Sequence[Any], discriminator: str | None) -> Slot:
    """``slot`` (a union of models) with its discriminator key and tag → member map: from ``Tag`` annotations
    (callable discriminators) or the members' ``Literal`` field of the discriminator's name."""
    tags: dict[str, type[BaseModel]] = {}
    for member in members:
        if get_origin(member) is Annotated:
            model, *metadata = get_args(member)
            tags |= {meta.tag: model for meta in metadata if isinstance(meta, Tag)}
    key = discriminator or _common_literal_field(slot.models)
    if key is not None and not tags:
        for model in slot.models:
            info = model.model_fields.get(key)
            if info is not None and get_origin(info.annotation) is Literal:
                tags |= {str(value): model for value in get_args(info.annotation)}
    return Slot(slot.models, key, tags, slot.entries, slot.items)


def _common_literal_field(models: Iterable[type[BaseModel]]) -> str | None:
    """The field every member declares as a ``Literal`` (a callable discriminator's key, by convention)."""
    common: dict[str, int] | None = None
    for model in models:
        names = {n: 1 for n, f in model.model_fields.items() if get_origin(f.annotation) is Literal}
        common = names if common is None else {n: 1 for n in common if n in names}
    return next(iter(common), None) if common else None


def _merge(slots: Sequence[Slot]) -> Slot:
    if len(slots) == 1:
        return slots[0]
    models = tuple(dict.fromkeys(m for s in slots for m in s.models))
    entries = [s.entries for s in slots if s.entries is not None]
    items = [s.items for s in slots if s.items is not None]
    tags = {k: v for s in slots for k, v in s.tags.items()}
    discriminator = next((s.discriminator for s in slots if s.discriminator), None)
    return Slot(models, discriminator, tags, _merge(entries) if entries else None, _merge(items) if items else None)


def walk_loc(loc: Sequence[Any], root: type[BaseModel] = Config) -> tuple[list[str], Slot]:
    """A pydantic error location → (the dotted key a user wrote, without the union tags pydantic inserts, and the
    slot there). ``("averagers", "swa", "swa", "start_epoch")`` → ``["averagers", "swa", "start_epoch"]``."""
    slot, parts = root_slot(root), []
    for part in loc:
        member = slot.member(part)
        if member is not None:
            slot = member
            continue
        parts.append(str(part))
        slot = (slot.items if isinstance(part, int) else slot.child(str(part))) or Slot()
    return parts, slot


def slot_at(path: Sequence[str], root: type[BaseModel] = Config) -> Slot | None:
    """The slot at a dotted key's parts, or ``None`` where a part is not allowed."""
    slot: Slot | None = root_slot(root)
    for part in path:
        slot = slot.child(part) if slot is not None else None
    return slot


def listed(names: Iterable[Any], limit: int = MAX_LISTED) -> str:
    """``a, b, c`` — at most ``limit`` names, then ``… and N more``."""
    names = [str(n) for n in names]
    shown = ", ".join(names[:limit])
    return f"{shown}, … and {len(names) - limit:,} more" if len(names) > limit else shown
