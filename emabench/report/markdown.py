"""The report document rendered as GitHub-flavoured Markdown; figures as relative PNG links. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from emabench.report.elements import Block, Bullets, Heading, Image, Paragraph, Table


def to_markdown(blocks: Sequence[Block]) -> str:
    """GitHub-flavoured Markdown; images as relative links to the PNG files next to ``report.md``."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            out += [block.text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out += ["| " + " | ".join(_md_cell(c) for c in block.header) + " |", "|" + "---|" * len(block.header)]
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows] + [""]
        elif isinstance(block, Image):
            out += [f"![{block.caption}]({block.name})", "", f"*{block.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
