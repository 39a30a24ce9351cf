"""The report document rendered as ONE self-contained HTML file: figures inline as base64 PNG data URIs, verdict
cells coloured. Pure, no I/O."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence

from emabench.report import decision
from emabench.report.blocks import TITLE
from emabench.report.elements import Block, Bullets, Heading, Image, Paragraph, Table

_VERDICT_CLASS = {
    decision.BETTER: "better",
    decision.WORSE: "worse",
    decision.EQUIVALENT: "equivalent",
    decision.INCONCLUSIVE: "open",
    decision.TOO_FEW: "few",
}
_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;max-width:1600px;
margin:0 auto;padding:24px 32px;background:#fff}
@media (max-width:700px){body{font-size:14px;padding:12px 10px}
.scroll td:first-child{white-space:normal;overflow-wrap:anywhere;min-width:7em;max-width:10em}}
h1{font-size:1.7em;border-bottom:2px solid #e5e7eb;padding-bottom:.3em}
h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #e5e7eb;padding-bottom:.2em}
p,li{max-width:1100px}
code{background:#f3f4f6;padding:0 .25em;border-radius:3px;font-size:.92em}
table{border-collapse:collapse;margin:.8em 0 1.2em;font-size:.86em}
.scroll{overflow-x:auto}
th,td{border:1px solid #d9dde3;padding:.3em .65em;text-align:right;white-space:nowrap;vertical-align:middle;
background:#fff}
th{background:#f3f4f6;text-align:center;white-space:normal}
td:nth-child(-n+3){text-align:left}
td small{color:#6b7280}
tr:nth-child(even) td{background:#fafbfc}
td.better{background:#d6f5de!important;color:#0f5323;font-weight:600;text-align:center}
td.worse{background:#fbdcdc!important;color:#8b1a1a;font-weight:600;text-align:center}
td.equivalent{background:#dbeafe!important;color:#1e3a8a;font-weight:600;text-align:center}
td.open{background:#eceff3!important;color:#4b5563;text-align:center}
td.few{background:#fff3c4!important;color:#6b5200;text-align:center}
td.better,td.worse,td.equivalent,td.open,td.few{white-space:normal;min-width:6.5em;max-width:9em}
.scroll td.better,.scroll td.worse,.scroll td.equivalent,.scroll td.open,.scroll td.few{position:sticky;right:0;
z-index:1;box-shadow:-1px 0 0 #d9dde3}
.scroll td:first-child,.scroll th:first-child{position:sticky;left:0;z-index:1;box-shadow:1px 0 0 #d9dde3}
.verdict-last th:last-child{position:sticky;right:0;z-index:1;box-shadow:-1px 0 0 #d9dde3}
strong.better{color:#0f7a30}strong.worse{color:#b42318}strong.equivalent{color:#1e3a8a}strong.open{color:#4b5563}
strong.few{color:#8a6a00}
.legend span{display:inline-block;padding:.05em .5em;margin-right:.6em;border-radius:3px;font-size:.85em}
figure{margin:1em 0 1.6em}
figure img{max-width:100%;border:1px solid #e5e7eb}
figcaption{font-size:.88em;color:#4b5563}
"""


def to_html(blocks: Sequence[Block], images: Mapping[str, bytes]) -> str:
    """One self-contained HTML page: no external file, figures as ``data:image/png;base64,…`` URIs."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
            if block.level == 1:
                body.append(_legend())
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            body.append(_html_table(block))
        elif isinstance(block, Image) and block.name in images:
            data = base64.b64encode(images[block.name]).decode("ascii")
            alt = html.escape(block.caption)
            body.append(
                f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"><figcaption>{alt}</figcaption></figure>'
            )
    title = next((b.text for b in blocks if isinstance(b, Heading)), TITLE)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def _legend() -> str:
    spans = "".join(f'<td class="{css}">{html.escape(verdict)}</td>' for verdict, css in _VERDICT_CLASS.items())
    return f'<table class="legend"><tr><th>verdict colours</th>{spans}</tr></table>'


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.header)
    rows = []
    for row in table.rows:
        cells = []
        for i, cell in enumerate(row):
            css = _VERDICT_CLASS.get(cell)
            text = _cell(cell) if i else re.sub(r"([.=,])(?=\S)", r"\1<wbr>", _cell(cell))  # a group's name may wrap
            cells.append(f'<td class="{css}">{html.escape(cell)}</td>' if css else f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    # verdict cells stay in view (at the right edge) however far the numbers scroll, as the first column (the group)
    # does at the left: on a narrow screen a row is still read from its name to its verdict; where the verdicts are
    # the last column, their header stays with them
    last = " verdict-last" if any(row and row[-1] in _VERDICT_CLASS for row in table.rows) else ""
    return (
        f'<div class="scroll"><table class="data{last}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _cell(text: str) -> str:
    """A table cell: its second line (an interval) small, under the first."""
    first, _, rest = text.partition("\n")
    return _inline(first) + (f"<br><small>{_inline(rest)}</small>" if rest else "")


def _strong(match: re.Match[str]) -> str:
    css = _VERDICT_CLASS.get(html.unescape(match.group(1)))
    return f'<strong class="{css}">{match.group(1)}</strong>' if css else f"<strong>{match.group(1)}</strong>"


def _inline(text: str) -> str:
    """Escape, then the two inline marks the document uses: ``**bold**`` and `` `code` ``, plus ``*em*``."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", _strong, out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", out)
