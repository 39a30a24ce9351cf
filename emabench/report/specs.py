"""What a group of runs is compared on, and which direction of each quantity is better: always from the runs' task
(:class:`~emabench.tasks.base.Task`, ``config.task``; for a run tracked by its own loop, the task its ``task.json``
declares: :mod:`emabench.tasks.declared`), never from a metric's name.

Per task, *selections* of columns are compared with the baseline, paired by seed:

- ``final``: the task's final metrics at the last epoch (regression: mse, mae, r2; classification: accuracy,
  f1_macro, ece), directions from the task's :class:`~emabench.tasks.base.MetricSpec`;
- ``best``: the same metrics of each model at its own lowest validation loss (columns ``best_<metric>``);
- ``early_stopped`` (runs with a held-out test set only): each model at its best validation epoch against the
  baseline's final weights (``early_stopped_<metric>``), the protocol of Morales-Brotons et al. (TMLR 2024);
- ``stability``: :data:`STABILITY`, the std of the validation loss after the burn-in (lower is steadier).

Each is measured on the held-out **test** set when the runs have one (``metrics.csv``'s ``test_<metric>`` columns and
``<model>@best`` rows, :mod:`emabench.report.collect`), else on the **validation** set; with a test set the validation
numbers are kept as well, exploratory. Stability is always the validation loss's. A :class:`Measure` is one compared
quantity: a selection, a metric and the set it is measured on; its ``column`` names it in the report's files and is
what ``--primary`` takes (``accuracy``, ``best_accuracy``, ``early_stopped_accuracy``; with a test set
``test_accuracy`` and so on name the same measures). On the test set classification also compares its loss, the
NLL (regression's loss is its MSE, compared already).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from emabench.tasks.base import VAL_LOSS, MetricSpec, Task
from emabench.tasks.registry import TASK_NAMES, get_task

STABILITY = MetricSpec("val_loss_std", higher_is_better=False, label="val-loss std")
NLL = MetricSpec("loss", higher_is_better=False, label="NLL")  # classification's test loss: the cross-entropy
SELECTIONS = ("final", "early_stopped", "best", "stability")
SELECTION_LABELS = {"final": "final", "early_stopped": "early-stopped", "best": "best-epoch", "stability": "stability"}
PREFIXES = {"final": "", "early_stopped": "early_stopped_", "best": "best_", "stability": ""}
TEST, VALIDATION = "test", "validation"
TEST_PREFIX = "test_"  # a metric measured on the held-out test set: ``test_accuracy`` beside ``accuracy``
HAS_TEST = "has_test"  # the per-run column (collect) saying whether the run's metrics.csv has test metrics


@dataclass(frozen=True)
class Measure:
    """One compared quantity: a ``selection`` (:data:`SELECTIONS`) of a ``metric`` measured ``on`` the test or the
    validation set, and which direction of it is better."""

    selection: str
    metric: str
    on: str
    higher_is_better: bool

    @property
    def column(self) -> str:
        """Its name in the report's files and in ``--primary``: ``test_accuracy``, ``early_stopped_test_ece``,
        ``best_accuracy`` (validation), ``val_loss_std``."""
        if self.selection == "stability":
            return STABILITY.name
        return PREFIXES[self.selection] + (TEST_PREFIX if self.on == TEST else "") + self.metric

    @property
    def sides(self) -> tuple[str, str]:
        """The per-run columns paired by seed: the compared model's and the baseline's. The early-stopped protocol
        pairs each model at its best validation epoch with the baseline's final weights."""
        if self.selection == "early_stopped":
            return f"best_{TEST_PREFIX}{self.metric}", f"{TEST_PREFIX}{self.metric}"
        return self.column, self.column


def tested_metrics(task: Task) -> tuple[str, ...]:
    """The metrics compared on the test set: the final ones, and for classification its loss, the NLL (regression's
    loss is its MSE)."""
    return (*task.final_metrics, NLL.name) if task.name == "classification" else tuple(task.final_metrics)


def measures(task: Task, tested: bool, cross_model: bool = True) -> list[Measure]:
    """Every compared :class:`Measure` of ``task``: with a test set (``tested``) the final, early-stopped and
    best-epoch protocols on it, then the final and best-epoch metrics on the validation set and the stability.
    ``cross_model=False`` leaves out the early-stopped protocol, which pairs two different selections (``--versus``
    compares each model with itself)."""
    out = []
    if tested:
        for selection in ("final", "early_stopped", "best") if cross_model else ("final", "best"):
            out += [Measure(selection, m, TEST, spec(task, m).higher_is_better) for m in tested_metrics(task)]
    for selection in ("final", "best"):
        out += [Measure(selection, m, VALIDATION, spec(task, m).higher_is_better) for m in task.final_metrics]
    return [*out, Measure("stability", STABILITY.name, VALIDATION, STABILITY.higher_is_better)]


def is_tested(frame: pd.DataFrame) -> bool:
    """Whether every run of ``frame`` has test metrics (:data:`HAS_TEST`)."""
    return HAS_TEST in frame.columns and len(frame) > 0 and bool(frame[HAS_TEST].fillna(False).astype(bool).all())


def task_of(frame: pd.DataFrame) -> Task:
    """The one task of ``frame``'s runs (a group: groups never mix tasks)."""
    names = list(dict.fromkeys(frame["task"])) if "task" in frame.columns else ["regression"]
    if len(names) != 1:
        raise ValueError(f"a group mixes tasks {names}: runs of different tasks are never compared")
    return get_task(str(names[0]))


def tasks_in(frame: pd.DataFrame) -> list[Task]:
    """The tasks of ``frame``'s runs: the built-in ones in :data:`TASK_NAMES` order, then the tasks of runs tracked
    by their own loop (declared by their metrics, :mod:`emabench.tasks.declared`) by name."""
    present = set(frame["task"]) if "task" in frame.columns and len(frame) else set()
    declared = sorted(str(name) for name in present if name not in TASK_NAMES)
    return [get_task(name) for name in (*(n for n in TASK_NAMES if n in present), *declared)]


def compared_columns(task: Task, tested: bool = False) -> dict[str, dict[str, bool]]:
    """Selection → {name → higher is better} of what ``task``'s runs can be compared on, by the names ``--primary``
    takes (``accuracy``, ``best_accuracy``, ``val_loss_std``; with a test set also ``early_stopped_accuracy`` and
    classification's ``loss``)."""
    metrics = tested_metrics(task) if tested else task.final_metrics
    final = {m: spec(task, m).higher_is_better for m in metrics}
    out = {"final": final}
    if tested:
        out["early_stopped"] = {f"{PREFIXES['early_stopped']}{m}": higher for m, higher in final.items()}
    out["best"] = {f"best_{m}": higher for m, higher in final.items()}
    out["stability"] = {STABILITY.name: STABILITY.higher_is_better}
    return out


def metric_columns(task: Task) -> tuple[str, ...]:
    """The per-run metric columns of ``task``'s runs: final, best-epoch, ``best_epoch``, stability, and the test
    set's final and best-epoch ones (``test_<metric>``, ``best_test_<metric>``: present only with a test set)."""
    final = task.final_metrics
    tested = [f"{TEST_PREFIX}{m}" for m in tested_metrics(task)]
    return (
        *final,
        *(f"best_{m}" for m in final),
        "best_epoch",
        STABILITY.name,
        *tested,
        *(f"best_{c}" for c in tested),
    )


def spec(task: Task, metric: str) -> MetricSpec:
    """The :class:`MetricSpec` of a compared metric (``best_`` stripped), stability and the NLL included."""
    name = metric.removeprefix("best_")
    if name == NLL.name:
        return NLL
    return STABILITY if name == STABILITY.name else task.metric(name)


def headline(task: Task) -> str:
    """The metric the terminal table and the headline figures show (MSE for regression, accuracy for classification)."""
    return task.final_metrics[0]


def label(task: Task, metric: str) -> str:
    """How people read a metric's name: ``MSE``, ``R²``, ``accuracy``, ``val-loss std``."""
    if metric == VAL_LOSS.name:
        return VAL_LOSS.label
    return spec(task, metric).label


def direction_text(tasks: list[Task]) -> str:
    """``Lower is better for MSE, MAE and val-loss std; higher for R².`` over the given tasks' metrics."""
    specs = list(dict.fromkeys(spec(t, m) for t in tasks for m in (*t.final_metrics, STABILITY.name)))
    lower = [s.label for s in specs if not s.higher_is_better]
    higher = [s.label for s in specs if s.higher_is_better]
    parts = [f"lower is better for {_join(lower)}" if lower else "", f"higher for {_join(higher)}" if higher else ""]
    text = "; ".join(p for p in parts if p)
    return text[:1].upper() + text[1:] + "." if text else ""


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
