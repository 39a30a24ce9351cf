"""The report's primary question: per task, which compared column the verdicts answer about, from which evaluation
set, within which margin two models count as equivalent, and which model every other is compared with.

Where each comes from, first found wins: the command line (``--primary``, ``--margin``, ``--baseline``), the runs'
config (``report.primary``, ``report.margin``: :mod:`emabench.config.report_specs`), the task's default (its
``primary_metric`` at the final epoch and its ``equivalence_margin``: :class:`~emabench.tasks.metric_specs.MetricSet`).
The baseline is ``raw`` unless ``--baseline`` names another model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from emabench.config.report_specs import PERCENT
from emabench.errors import ConfigError
from emabench.report.groups import BASELINE
from emabench.report.specs import SELECTION_LABELS, compared_columns, spec
from emabench.tasks.base import Task

TEST_PREFIX = "test_"  # a metric measured on a held-out test set: ``test_accuracy`` beside ``accuracy``


@dataclass(frozen=True)
class Margin:
    """An equivalence margin: ``value`` in the metric's units, or a fraction of the baseline's mean (``relative``)."""

    value: float
    relative: bool

    def absolute(self, baseline_mean: float) -> float:
        """The margin in the metric's units; NaN for a relative margin of a baseline whose mean is 0 or unknown."""
        if not self.relative:
            return self.value
        scaled = self.value * abs(baseline_mean)
        return scaled if math.isfinite(scaled) and scaled > 0 else float("nan")

    @property
    def text(self) -> str:
        return f"{self.value * 100:g}% of the baseline's mean" if self.relative else f"{self.value:g}"


@dataclass(frozen=True)
class Primary:
    """One task's primary comparison: its per-run ``column`` (a final metric, ``best_<metric>``, ``val_loss_std``),
    that column's ``selection`` and ``metric``, the evaluation ``source`` set and the equivalence ``margin``."""

    column: str
    selection: str
    metric: str
    source: str
    margin: Margin

    def label(self, task: Task) -> str:
        """``final accuracy (validation)``."""
        name = "stability" if self.selection == "stability" else f"{SELECTION_LABELS[self.selection]} "
        name += "" if self.selection == "stability" else spec(task, self.metric).label
        return f"{name} ({self.source} set)" if self.selection != "stability" else f"{name} (validation loss)"


@dataclass(frozen=True)
class Question:
    """The primary comparison of every task in the report, and the baseline model."""

    primary: dict[str, Primary]
    baseline: str = BASELINE

    def of(self, task: Task) -> Primary:
        return self.primary[task.name]


def parse_margin(value: Any, source: str) -> Margin:
    """``0.005`` → absolute; ``"1%"`` → relative. One-line :class:`ConfigError` naming ``source`` otherwise."""
    if isinstance(value, str) and PERCENT.match(value):
        fraction = float(value.strip().rstrip("%").strip()) / 100.0
        if fraction > 0:
            return Margin(fraction, relative=True)
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if math.isfinite(number) and number > 0:
            return Margin(number, relative=False)
    raise ConfigError(f"{source}: {value!r} is not a margin: give a positive number (0.005) or a percentage (1%)")


def evaluation_set(columns: Sequence[str], column: str, selection: str) -> tuple[str, str]:
    """Where the primary number comes from: the held-out test set's column (``test_<column>``) when the runs have
    one and the selection is the final epoch (a best epoch is picked on validation), else the validation column.
    Returns ``(column, "test" or "validation")``."""
    if selection == "final" and f"{TEST_PREFIX}{column}" in columns:
        return f"{TEST_PREFIX}{column}", "test"
    return column, "validation"


def primary_for(task: Task, name: str | None, margin: Margin | None, columns: Sequence[str], source: str) -> Primary:
    """The primary comparison of ``task``: column ``name`` (the task's primary metric when None), checked against
    the task's compared columns (one-line :class:`ConfigError` listing them, naming ``source``)."""
    name = name or task.primary_metric
    selections = {column: selection for selection, cols in compared_columns(task).items() for column in cols}
    if name not in selections:
        raise ConfigError(
            f"{source}: {name!r} is not a compared column of task {task.name} (allowed: {', '.join(selections)})"
        )
    selection = selections[name]
    column, evaluated_on = evaluation_set(columns, name, selection)
    margin = margin or parse_margin(task.equivalence_margin, f"the default margin of task {task.name}")
    return Primary(column, selection, name.removeprefix("best_"), evaluated_on, margin)


def resolve_question(
    per_run: pd.DataFrame,
    tasks: Sequence[Task],
    primary: str | None = None,
    margin: str | None = None,
    baseline: str | None = None,
) -> Question:
    """The report's :class:`Question` from the command line's ``primary``/``margin``/``baseline`` (None: not given),
    else the runs' ``report.primary``/``report.margin``, else each task's defaults."""
    chosen = {}
    for task in tasks:
        runs = per_run[per_run["task"] == task.name] if "task" in per_run.columns else per_run
        name = primary or _from_runs(runs, "report.primary", task)
        given = margin if margin is not None else _from_runs(runs, "report.margin", task)
        source = "--margin" if margin is not None else "report.margin"
        parsed = parse_margin(given, source) if given is not None else None
        where = "--primary" if primary else "report.primary"
        chosen[task.name] = primary_for(task, name, parsed, list(per_run.columns), where)
    return Question(chosen, baseline or BASELINE)


def _from_runs(runs: pd.DataFrame, key: str, task: Task) -> Any:
    """The one value of config ``key`` among ``runs`` (None when no run sets it); several values are refused."""
    if key not in runs.columns:
        return None
    values = list(dict.fromkeys(v for v in runs[key] if v is not None and not (isinstance(v, float) and math.isnan(v))))
    if len(values) > 1:
        flag = "--" + key.split(".")[1]
        raise ConfigError(
            f"{key}: the {task.name} runs say {', '.join(map(repr, values))}; one report asks one question, so "
            f"choose with {flag} (or report them apart with --where {key}=VALUE)"
        )
    return values[0] if values else None
