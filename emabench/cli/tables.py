"""Terminal tables that never split a word: a number, a run id, ``beta=0.99`` stay whole at any width.

Rich shrinks a too-wide table by folding cells mid-word (``beta=0.9`` / ``9``). Here every column gets at least the
width of its longest word, and the widths are set explicitly, so rich only ever wraps at spaces. When even the
narrowest columns do not fit the console, the columns are folded into several tables (each repeating the first
``keep`` columns that name the row); when not even that fits, each row becomes a small field/value table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

StyleOf = Callable[[str], str | None]


def word_widths(texts: Sequence[str]) -> tuple[int, int]:
    """(longest word, longest line) over ``texts``, in terminal cells: a column's narrowest and natural width."""
    words = [cell_len(word) for text in texts for word in text.split()]
    lines = [cell_len(line) for text in texts for line in text.splitlines()]
    return max(words, default=1), max(lines, default=1)


def fitted_tables(
    console: Console,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    keep: int = 1,
    style_of: StyleOf | None = None,
) -> list[Table]:
    """The tables that show ``rows`` within ``console.width`` without splitting a word (see the module docstring)."""
    columns = list(range(len(header)))
    ranges = [word_widths([header[c], *(row[c] for row in rows)]) for c in columns]
    if _width(console, [ranges[c][0] for c in columns]) <= console.width:
        return [_table(console, header, rows, columns, ranges, title, style_of)]
    chunks = _fold(console, columns, ranges, keep)
    if chunks is None:
        return _vertical(console, header, rows, title, keep, style_of)
    return [
        _table(console, header, rows, chunk, ranges, f"{title} ({i}/{len(chunks)})" if title else None, style_of)
        for i, chunk in enumerate(chunks, 1)
    ]


def print_fitted(console: Console, header: Sequence[str], rows: Sequence[Sequence[str]], **options: Any) -> None:
    for table in fitted_tables(console, header, rows, **options):
        console.print(table)


def _fold(console: Console, columns: list[int], ranges: list[tuple[int, int]], keep: int) -> list[list[int]] | None:
    """The columns after the first ``keep`` packed greedily into tables that fit; ``None`` if one column cannot."""
    ids, rest = columns[:keep], columns[keep:]
    chunks: list[list[int]] = []
    for column in rest:
        if chunks and _width(console, [ranges[c][0] for c in [*ids, *chunks[-1], column]]) <= console.width:
            chunks[-1].append(column)
        elif _width(console, [ranges[c][0] for c in [*ids, column]]) <= console.width:
            chunks.append([column])
        else:
            return None
    return [[*ids, *chunk] for chunk in chunks] or [ids]


def _width(console: Console, widths: Sequence[int]) -> int:
    """The rendered width of a table whose columns have exactly ``widths`` (padding and borders included)."""
    table = Table(show_header=False)
    for width in widths:
        table.add_column(width=width)
    return Measurement.get(console, console.options.update_width(10**6), table).maximum


def _widths(console: Console, ranges: Sequence[tuple[int, int]]) -> list[int]:
    """Each column's width: its natural width when everything fits, else its narrowest plus a share of what is
    left, the columns closest to their natural width served first (so as many as possible need no wrapping)."""
    widths = [low for low, _ in ranges]
    budget = console.width - _width(console, widths)
    for index in sorted(range(len(ranges)), key=lambda i: ranges[i][1] - ranges[i][0]):
        grow = min(ranges[index][1] - ranges[index][0], max(budget, 0))
        widths[index] += grow
        budget -= grow
    return widths


def _table(
    console: Console,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    columns: Sequence[int],
    ranges: Sequence[tuple[int, int]],
    title: str | None,
    style_of: StyleOf | None,
) -> Table:
    table = Table(title=title)
    for column, width in zip(columns, _widths(console, [ranges[c] for c in columns])):
        table.add_column(header[column], width=width, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row[c], style_of) for c in columns))
    return table


def _vertical(
    console: Console,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    title: str | None,
    keep: int,
    style_of: StyleOf | None,
) -> list[Table]:
    """One field/value table per row, titled by the row's first ``keep`` cells: for very narrow terminals."""
    tables = []
    for row in rows:
        name = " · ".join(row[:keep])
        pairs = [(header[c], row[c]) for c in range(keep, len(header))]
        ranges = [word_widths([h for h, _ in pairs]), word_widths([v for _, v in pairs])]
        table = Table(title=f"{title}: {name}" if title else name, show_header=False)
        for width in _widths(console, ranges):
            table.add_column(width=width, overflow="fold")
        for field, value in pairs:
            table.add_row(field, _cell(value, style_of))
        tables.append(table)
    return tables


def _cell(text: str, style_of: StyleOf | None) -> Text:
    return Text(text, style=(style_of(text) if style_of else None) or "")


def run_metrics_rows(metrics: Any, task: Any) -> tuple[list[str], list[list[str]]]:
    """``metrics.csv`` of a run of ``task`` as header and rows: each final metric, its gain over raw (positive =
    better, in that metric's direction), the validation-loss std and, for post-hoc models, the fit error."""
    names = list(task.final_metrics)
    header = [
        "model",
        "epoch",
        *(task.metric(m).label for m in names),
        *(f"{task.metric(m).label} gain" for m in names),
    ]
    header.append("val-loss std")
    records = metrics.to_dict("records") if hasattr(metrics, "to_dict") else list(metrics)
    fit = any(_is_number(r.get("fit_error")) for r in records)
    header += ["fit error"] if fit else []
    rows = []
    for r in records:
        row = [str(r["model"]), _count(r["epoch"]), *(_number(r.get(m)) for m in names)]
        row += [_gain(r.get(f"{m}_improvement_pct")) for m in names]
        row.append(_number(r.get("val_loss_std")))
        row += [_number(r.get("fit_error"), "{:.2g}")] if fit else []
        rows.append(row)
    return header, rows


def test_metrics_rows(metrics: Any, task: Any) -> tuple[list[str], list[list[str]]]:
    """The test-set columns of ``metrics.csv`` (``test_loss``, ``test_<metric>``) as header and rows: each model's
    final weights, and each ``<model>@best`` at its best validation epoch; empty without a test set."""
    records = metrics.to_dict("records") if hasattr(metrics, "to_dict") else list(metrics)
    names = [spec.name for spec in task.metrics]
    columns = [f"test_{'loss' if name == 'val_loss' else name}" for name in names]
    if not records or columns[0] not in records[0]:
        return [], []
    header = ["model", "epoch", *("loss" if name == "val_loss" else task.metric(name).label for name in names)]
    rows = [[str(r["model"]), _count(r["epoch"]), *(_number(r.get(c)) for c in columns)] for r in records]
    return header, rows


def print_run_metrics(console: Console, folder: Any) -> None:
    """A finished run's final tables (its ``metrics.csv``): on the held-out test set when it has one, then on the
    validation set, in its task's metrics, fitted to the console (without pandas: right after a run, its import would
    cost more than the tables)."""
    metrics, task = folder.read_metrics_rows(), folder.task()
    header, rows = test_metrics_rows(metrics, task)
    if rows:
        print_fitted(console, header, rows, title="final metrics on the held-out test set")
    header, rows = run_metrics_rows([r for r in metrics if "@" not in str(r["model"])], task)
    print_fitted(console, header, rows, title="final validation metrics")


def _is_number(value: Any) -> bool:
    try:
        return float(value) == float(value)  # False for NaN
    except (TypeError, ValueError):
        return False


def _number(value: Any, pattern: str = "{:.4f}") -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if number != number else pattern.format(number)


def _count(value: Any) -> str:
    """An epoch count as an integer (``metrics.csv`` is read back as floats: 67.0 → ``67``)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(number)) if number.is_integer() else str(value)


def _gain(value: Any) -> str:
    return _number(value, "{:+.2f}%")
