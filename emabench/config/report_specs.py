"""``report:``: how ``emabench report`` reads a study's runs. It says nothing about training, so it is left out of
the run id and the sweep folder's hash (:func:`emabench.config.identity.identity`): changing it never moves a run.

- ``primary``: the compared column the report's verdicts answer about (null: the task's own, e.g. ``accuracy`` or
  ``mse`` at the final epoch). A final metric (``accuracy``, ``mse``, ``r2`` …), a best-epoch one (``best_accuracy``)
  or ``val_loss_std`` (stability); with a held-out test set, measured on it, and ``early_stopped_accuracy`` (each
  model at its best validation epoch vs the baseline's final weights) and ``loss`` (the NLL) too; checked against
  the run's task by the report.
- ``margin``: the difference from the baseline within which two models count as equivalent: a number in the
  metric's units (``0.005``), or a percentage of the baseline's mean (``"1%"``). Null: the task's default.
"""

from __future__ import annotations

import re

from pydantic import field_validator

from emabench.config.base import _Section

PERCENT = re.compile(r"^\s*(\d+(\.\d*)?|\.\d+)\s*%\s*$")


class ReportSpec(_Section):
    primary: str | None = None
    margin: float | str | None = None

    @field_validator("primary")
    @classmethod
    def _column_name(cls, primary: str | None) -> str | None:
        if primary is not None and not re.match(r"^[a-z][a-z0-9_]{0,63}$", primary):
            raise ValueError(f"{primary!r} is not a metric column name (e.g. accuracy, mse, best_accuracy)")
        return primary

    @field_validator("margin")
    @classmethod
    def _positive(cls, margin: float | str | None) -> float | str | None:
        if isinstance(margin, str) and (not PERCENT.match(margin) or float(margin.strip().rstrip("%")) <= 0):
            raise ValueError(f"{margin!r} is neither a positive number nor a percentage such as '1%'")
        if isinstance(margin, float | int) and not margin > 0:
            raise ValueError(f"must be positive, got {margin}")
        return margin
