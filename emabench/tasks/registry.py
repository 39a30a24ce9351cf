"""Tasks by name (``config.task``)."""

from __future__ import annotations

from emabench.tasks.base import Task
from emabench.tasks.classification import Classification
from emabench.tasks.regression import Regression

TASK_NAMES = ("regression", "classification")


def get_task(name: str, *, smoothing_kind: str = "seed") -> Task:
    """The task called ``name``; ``smoothing_kind`` chooses the label-smoothing definition (classification)."""
    if name == "regression":
        return Regression()
    if name == "classification":
        return Classification(smoothing_kind)
    raise ValueError(f"task must be one of {', '.join(TASK_NAMES)}, got {name!r}")
