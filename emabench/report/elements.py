"""The pieces a report document is made of (headings, text, tables, figures), shared by the sections that build it
(:mod:`.blocks`, :mod:`.versus_blocks`) and the renderers (:mod:`.markdown`, :mod:`.html`). Pure data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str  # may hold **bold**


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    name: str  # file name next to the report
    caption: str


Block = Heading | Paragraph | Bullets | Table | Image
