"""The report's terminal tables, one per task, as plain strings (the CLI colours the verdicts and fits them to the
terminal's width): per group and model, the primary measure of the baseline and of the model, the paired difference
with its CI, the seeds won, the p-values, the verdict and the seeds that would settle it, and the decay reached; with
``--versus``, the same per group, model and value of the compared setting. Pure functions of a
:class:`~emabench.report.frames.Report`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from emabench.report.formats import diff_text, fmt, p_text, seeds_text
from emabench.report.frames import Report
from emabench.report.groups import plain_value, with_groups
from emabench.report.protocol_blocks import PROTOCOL_SHORT
from emabench.report.question import Primary
from emabench.report.specs import TEST, spec
from emabench.report.versus import Versus
from emabench.tasks.base import Task


@dataclass(frozen=True)
class TerminalTable:
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def display_tables(report: Report) -> list[TerminalTable]:
    """One table per task of the report (runs of different tasks are never compared), then the ``--versus`` table."""
    versus = [_versus_table(report.versus, report.tasks[0], report)] if report.versus is not None else []
    comparison = report.comparison
    if comparison.empty:
        return versus
    comparison = with_groups(comparison[comparison["role"] == "primary"], report.by)
    decays = {(r["group"], r["model"]): r["decay_mean"] for r in report.decay.to_dict("records")}
    tables = [_task_table(task, report, comparison[comparison["task"] == task.name], decays) for task in report.tasks]
    protocols = [_protocols_table(task, report) for task in report.tasks]
    return tables + [table for table in protocols if table.rows] + versus


def _protocols_table(task: Task, report: Report) -> TerminalTable:
    """The protocols on the test set other than the primary one, on the primary's metric: described, no verdict
    (no rows without a test set)."""
    primary, baseline = report.question.of(task), report.question.baseline
    rows = report.comparison
    rows = rows[(rows["task"] == task.name) & (rows["set"] == TEST) & (rows["metric"] == primary.metric)]
    rows = with_groups(rows[(rows["selection"] != primary.selection) & (rows["n"] > 0)], report.by)
    name = spec(task, primary.metric).label
    header = ("group", "model", "protocol", "n", f"{name} {baseline}", f"{name} model", f"Δ {name} [95% CI]", "wins")
    header += ("p t / sign-flip",)
    body = tuple(
        (
            r["group"],
            r["model"],
            PROTOCOL_SHORT[r["selection"]],
            str(r["n"]),
            fmt(r["baseline_mean"]),
            fmt(r["mean"]),
            diff_text(r),
            f"{r['wins']}/{r['n']}",
            f"{p_text(r['p_ttest'])} / {p_text(r['p_sign_flip'])}",
        )
        for r in rows.to_dict("records")
    )
    title = f"{task.name}: the other protocols on the test set, {name}, paired by seed (exploratory: no verdict)"
    return TerminalTable(title, header, body)


def _primary_cells(head: dict, primary: Primary) -> list[str]:
    """n, the two means, Δ [CI], wins, p-values, verdict and seeds of one primary row."""
    n = f"{head['n']}" + (f" ({head['n_diverged']} div.)" if head["n_diverged"] else "")
    line = [n, fmt(head["baseline_mean"]), fmt(head["mean"]), diff_text(head), f"{head['wins']}/{head['n']}"]
    line += [f"{p_text(head['p_ttest'])} / {p_text(head['p_sign_flip'])}", str(head["verdict"])]
    return line + [seeds_text(head["seeds_needed"])]


def _task_table(task: Task, report: Report, rows: pd.DataFrame, decays: dict[tuple[str, str], float]) -> TerminalTable:
    primary, baseline = report.question.of(task), report.question.baseline
    name = spec(task, primary.metric).label
    header = ("group", "model", "n", f"{name} {baseline}", f"{name} model", f"Δ {name} [95% CI]", "wins")
    header += ("p t / sign-flip", "verdict", "seeds to settle", "decay reached")
    header += ("decided at",) if report.looks is not None else ()
    body = []
    for head in rows.to_dict("records"):
        decay = decays.get((head["group"], head["model"]), np.nan)
        line = [head["group"], head["model"], *_primary_cells(head, primary)]
        line.append("" if np.isnan(decay) else f"{decay:.4f}")
        if report.looks is not None:
            line.append(seeds_text(head["decided_at"]))
        body.append(tuple(line))
    title = f"{task.name}: each model vs {baseline}, {primary.label(task)}, paired by seed"
    return TerminalTable(title, header, tuple(body))


def _versus_table(versus: Versus, task: Task, report: Report) -> TerminalTable:
    """Per group, model and value of the compared key: the primary measure at the baseline value and at the value,
    the paired difference, the seeds won, the p-values (the versus family), the verdict and the seeds to settle it."""
    primary = report.question.of(task)
    name, baseline = spec(task, primary.metric).label, plain_value(versus.baseline)
    header = ("group", "model", "value", "n", f"{name} at {baseline}", f"{name} at value", f"Δ {name} [95% CI]")
    header += ("wins", "p t / sign-flip", "verdict", "seeds to settle")
    rows = with_groups(versus.table[versus.table["role"] == "primary"], versus.by)
    body = []
    for head in rows.to_dict("records"):
        cells = _primary_cells(head, primary)
        body.append((head["group"], head["model"], plain_value(head["value"]), *cells))
    title = f"{versus.title}, per model, {primary.label(task)}, paired by seed"
    return TerminalTable(title, header, tuple(body))
