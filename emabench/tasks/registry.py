"""Tasks by name (``config.task``): the built-in tasks, and the tasks of runs tracked by a loop of the user's own,
declared by their metrics (:mod:`emabench.tasks.declared`: ``classification(accuracy)``, ``custom(bleu:higher)``)."""

from __future__ import annotations

from emabench.tasks.base import Task
from emabench.tasks.classification import Classification
from emabench.tasks.declared import DeclaredTask, parse_declared
from emabench.tasks.regression import Regression

TASK_NAMES = ("regression", "classification")


def get_task(name: str, *, smoothing_kind: str = "seed") -> Task | DeclaredTask:
    """The task called ``name``; ``smoothing_kind`` chooses the label-smoothing definition (classification). A
    declared task (a run folder written by :mod:`emabench.track`) has metrics and directions only: no loss to train
    with, which is all the tables and the report read."""
    if name == "regression":
        return Regression()
    if name == "classification":
        return Classification(smoothing_kind)
    declared = parse_declared(name)
    if declared is not None:
        return declared
    raise ValueError(f"task must be one of {', '.join(TASK_NAMES)}, got {name!r}")
