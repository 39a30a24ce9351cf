"""The report's terminal tables, one per task, as plain strings (the CLI colours the verdicts and fits them to the
terminal's width): per group and averaged model, the task's headline metric raw vs model, the paired difference with
its CI, the seeds won, the Holm-adjusted p-values and the verdicts (final metrics, best-epoch headline, stability),
and the decay reached; with ``--versus``, the same per group, model and value of the compared setting. Pure functions
of a :class:`~emabench.report.frames.Report`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from emabench.report.formats import diff_text, fmt, p_text
from emabench.report.frames import Report
from emabench.report.groups import plain_value, with_groups
from emabench.report.specs import STABILITY, headline, spec
from emabench.report.versus import Versus
from emabench.tasks.base import Task


@dataclass(frozen=True)
class TerminalTable:
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def display_tables(report: Report) -> list[TerminalTable]:
    """One table per task of the report (runs of different tasks are never compared), then the ``--versus`` table."""
    versus = [_versus_table(report.versus, report.tasks[0])] if report.versus is not None else []
    comparison = report.comparison
    if comparison.empty:
        return versus
    comparison = with_groups(comparison, report.by)
    decays = {(r["group"], r["model"]): r["decay_mean"] for r in report.decay.to_dict("records")}
    tables = [_task_table(task, comparison[comparison["task"] == task.name], decays) for task in report.tasks]
    return tables + versus


def _verdict_columns(task: Task) -> list[tuple[str, str, str]]:
    """(selection, metric, column title) of the verdicts the terminal shows for ``task``."""
    main = headline(task)
    columns = [("final", m, spec(task, m).label) for m in task.final_metrics]
    return columns + [
        ("best", main, f"best-ep {spec(task, main).label}"),
        ("stability", STABILITY.name, "val-loss std"),
    ]


def _task_table(task: Task, comparison: pd.DataFrame, decays: dict[tuple[str, str], float]) -> TerminalTable:
    main, name = headline(task), spec(task, headline(task)).label
    verdicts = _verdict_columns(task)
    header = ("group", "model", "n", f"{name} raw", f"{name} model", f"Δ {name} [95% CI]", "wins", "p Holm t / W")
    header += (*(title for _, _, title in verdicts), "decay reached")
    body = []
    for (group, model), rows in comparison.groupby(["group", "model"], sort=False):
        cells = {(r["selection"], r["metric"]): r for r in rows.to_dict("records")}
        head = cells.get(("final", main))
        if head is None:
            continue
        n = f"{head['n']}" + (f" ({head['n_diverged']} div.)" if head["n_diverged"] else "")
        line = [group, model, n, fmt(head["baseline_mean"]), fmt(head["mean"]), diff_text(head)]
        line += [f"{head['wins']}/{head['n']}", f"{p_text(head['p_ttest_holm'])} / {p_text(head['p_wilcoxon_holm'])}"]
        line += [str(cells[(s, m)]["verdict"]) if (s, m) in cells else "" for s, m, _ in verdicts]
        decay = decays.get((group, model), np.nan)
        line.append("" if np.isnan(decay) else f"{decay:.4f}")
        body.append(tuple(line))
    title = f"{task.name}: averaged vs raw, paired by seed (final epoch unless named)"
    return TerminalTable(title, header, tuple(body))


def _versus_table(versus: Versus, task: Task) -> TerminalTable:
    """Per group, model and value of the compared key: the headline metric at the baseline value and at the value,
    the paired difference, the seeds won, the Holm-adjusted p-values (the versus family) and the verdicts."""
    main, name = headline(task), spec(task, headline(task)).label
    baseline = plain_value(versus.baseline)
    verdicts = _verdict_columns(task)
    header = ("group", "model", "value", "n", f"{name} at {baseline}", f"{name} at value", f"Δ {name} [95% CI]", "wins")
    header += ("p Holm t / W", *(title for _, _, title in verdicts))
    body = []
    rows = with_groups(versus.table, versus.by)
    for _, part in rows.groupby(["group", "model", "value"], sort=False, dropna=False):
        cells = {(r["selection"], r["metric"]): r for r in part.to_dict("records")}
        head = cells.get(("final", main))
        if head is None:
            continue
        n = f"{head['n']}" + (f" ({head['n_diverged']} div.)" if head["n_diverged"] else "")
        line = [head["group"], head["model"], plain_value(head["value"]), n, fmt(head["baseline_mean"])]
        line += [fmt(head["mean"]), diff_text(head), f"{head['wins']}/{head['n']}"]
        line.append(f"{p_text(head['p_ttest_holm'])} / {p_text(head['p_wilcoxon_holm'])}")
        line += [str(cells[(s, m)]["verdict"]) if (s, m) in cells else "" for s, m, _ in verdicts]
        body.append(tuple(line))
    title = f"{versus.title}, per model, paired by seed (final epoch unless named)"
    return TerminalTable(title, header, tuple(body))
