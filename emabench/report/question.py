"""The report's primary question: per task, which compared column the verdicts answer about, from which evaluation
set, within which margin two models count as equivalent, and which model every other is compared with.

The column names a protocol by its prefix (:mod:`emabench.report.specs`): ``accuracy`` final vs final,
``early_stopped_accuracy`` each model at its best validation epoch vs the baseline's final weights, ``best_accuracy``
best vs best; ``val_loss_std`` the stability. It is measured on the held-out test set when every run of the task has
one (:func:`evaluation_set`), else on the validation set; ``early_stopped_*`` and classification's ``loss`` (the NLL)
need a test set.

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
from emabench.report.specs import (
    PREFIXES,
    SELECTION_LABELS,
    TEST,
    TEST_PREFIX,
    VALIDATION,
    Measure,
    compared_columns,
    is_tested,
    spec,
)
from emabench.tasks.base import Task


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
        """``final accuracy (test set)``, ``early-stopped accuracy (test set)``, ``stability (validation loss)``."""
        if self.selection == "stability":
            return "stability (validation loss)"
        return f"{SELECTION_LABELS[self.selection]} {spec(task, self.metric).label} ({self.source} set)"


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


def evaluation_set(tested: bool, selection: str) -> str:
    """Where a primary number comes from: the held-out test set when the runs have one (``tested``), for every
    protocol (a best epoch is picked on validation, then measured on test); the validation set otherwise, and for
    the stability, which is the validation loss's."""
    return TEST if tested and selection != "stability" else VALIDATION


def primary_for(task: Task, name: str | None, margin: Margin | None, tested: bool, source: str) -> Primary:
    """The primary comparison of ``task``: column ``name`` (the task's primary metric when None; with a test set
    ``test_accuracy`` and ``early_stopped_test_accuracy`` name the same as ``accuracy`` and
    ``early_stopped_accuracy``), checked against the task's compared columns (one-line :class:`ConfigError` listing
    them, naming ``source``)."""
    name = name or task.primary_metric
    selections = {column: selection for selection, cols in compared_columns(task, tested).items() for column in cols}
    name = _without_test(name) if tested and name not in selections else name
    if name not in selections:
        needs = compared_columns(task, tested=True)
        if not tested and any(name in cols for cols in needs.values()):
            raise ConfigError(
                f"{source}: {name!r} is measured on a held-out test set, and these {task.name} runs have none "
                "(data.holdout, or a source's own test part)"
            )
        raise ConfigError(
            f"{source}: {name!r} is not a compared column of task {task.name} (allowed: {', '.join(selections)})"
        )
    selection = selections[name]
    metric = name.removeprefix(PREFIXES[selection]) if selection != "stability" else name
    on = evaluation_set(tested, selection)
    margin = margin or parse_margin(task.equivalence_margin, f"the default margin of task {task.name}")
    column = Measure(selection, metric, on, spec(task, metric).higher_is_better).column
    return Primary(column, selection, metric, on, margin)


def _without_test(name: str) -> str:
    """``test_accuracy`` → ``accuracy``, ``best_test_ece`` → ``best_ece``: the test set's name of a measure."""
    for prefix in sorted(set(PREFIXES.values()), key=len, reverse=True):
        if name.startswith(prefix + TEST_PREFIX):
            return prefix + name.removeprefix(prefix + TEST_PREFIX)
    return name


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
        chosen[task.name] = primary_for(task, name, parsed, is_tested(runs), where)
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
