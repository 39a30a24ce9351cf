"""What a group of runs is compared on, and which direction of each quantity is better: always from the runs' task
(:class:`~emabench.tasks.base.Task`, ``config.task``; for a run tracked by its own loop, the task its ``task.json``
declares: :mod:`emabench.tasks.declared`), never from a metric's name.

Per task, three *selections* of columns are compared with raw, paired by seed:

- ``final``: the task's final metrics at the last epoch (regression: mse, mae, r2; classification: accuracy,
  f1_macro), directions from the task's :class:`~emabench.tasks.base.MetricSpec`;
- ``best``: the same metrics at each model's own lowest validation loss (columns ``best_<metric>``);
- ``stability``: :data:`STABILITY`, the std of the validation loss after the burn-in (lower is steadier).

The *headline* metric (the terminal table, the paired and vs-beta figures) is the task's first final metric: MSE for
regression, as the seed study reports it, accuracy for classification.
"""

from __future__ import annotations

import pandas as pd

from emabench.tasks.base import VAL_LOSS, MetricSpec, Task
from emabench.tasks.registry import TASK_NAMES, get_task

STABILITY = MetricSpec("val_loss_std", higher_is_better=False, label="val-loss std")
SELECTIONS = ("final", "best", "stability")
SELECTION_LABELS = {"final": "final", "best": "best-epoch", "stability": "stability"}


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


def compared_columns(task: Task) -> dict[str, dict[str, bool]]:
    """Selection → {per-run column → higher is better} for ``task``."""
    final = {m: task.metric(m).higher_is_better for m in task.final_metrics}
    return {
        "final": final,
        "best": {f"best_{m}": higher for m, higher in final.items()},
        "stability": {STABILITY.name: STABILITY.higher_is_better},
    }


def metric_columns(task: Task) -> tuple[str, ...]:
    """The per-run metric columns of ``task``'s runs: final, best-epoch, ``best_epoch``, stability."""
    final = task.final_metrics
    return (*final, *(f"best_{m}" for m in final), "best_epoch", STABILITY.name)


def spec(task: Task, metric: str) -> MetricSpec:
    """The :class:`MetricSpec` of a compared metric (``best_`` stripped), stability included."""
    name = metric.removeprefix("best_")
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
