"""What a run's numbers are called in a tracker, the same for MLflow and TensorBoard.

A ``history.csv`` column is either a model's (``<model>_<metric>``: ``raw_val_loss``, ``ema_accuracy``,
``ema_0.99_decay``) or the run's (``train_loss``, ``lr``); ``epoch`` is the step, not a value. MLflow names a model's
metric ``<model>/<metric>`` (``raw/val_loss``, ``ema/accuracy``) and the run's by its column; TensorBoard writes each
model into an event directory of its own under the same tag (``val_loss``), so raw and every averaged model of a
metric share one chart. The params are the resolved config flattened to dotted keys (``ema.beta``,
``train.optimizer.lr``) plus the run id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from emabench.config import Config, identity
from emabench.runs.layout import run_id
from emabench.tasks.registry import get_task

STEP = "epoch"  # the history column every value is logged against
PER_MODEL = ("decay", "half_life")  # besides the task's metrics: what an averager's columns hold


@dataclass(frozen=True)
class Column:
    """A history column's place: ``model`` (``None`` for the run's own columns) and ``metric``."""

    model: str | None
    metric: str

    @property
    def key(self) -> str:
        """MLflow's metric key: ``raw/val_loss``, ``ema/decay``, ``train_loss``."""
        return self.metric if self.model is None else f"{self.model}/{self.metric}"


@dataclass(frozen=True)
class Naming:
    """How one config's history columns are split into models and metrics."""

    models: tuple[str, ...]  # longest first: ``ema_0.99`` is tried before ``ema``
    metrics: frozenset[str]

    @classmethod
    def of(cls, config: Config) -> Naming:
        task = get_task(config.task)
        models = sorted(config.model_names(per_epoch_only=True), key=len, reverse=True)
        return cls(tuple(models), frozenset([*(m.name for m in task.metrics), *PER_MODEL]))

    def column(self, name: str) -> Column:
        """``raw_val_loss`` → (raw, val_loss); a model's column whose metric is unknown still goes to the longest
        model it starts with; anything else is the run's."""
        fallback = None
        for model in self.models:
            if name.startswith(model + "_"):
                metric = name[len(model) + 1 :]
                if metric in self.metrics:
                    return Column(model, metric)
                fallback = fallback or Column(model, metric)
        return fallback or Column(None, name)

    def columns(self, names: Iterable[str]) -> dict[str, Column]:
        """Every column but the step, by name."""
        return {name: self.column(name) for name in names if name != STEP}


def params(config: Config) -> dict[str, str]:
    """The run's params: its config flattened to dotted keys (lists and ``null`` as JSON), plus ``run_id``."""
    raw = identity(config.to_dict())
    flat = dict(_flatten(raw))
    flat["run_id"] = run_id(raw)
    return {key: _text(value) for key, value in flat.items()}


def _flatten(mapping: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict)) or value is None:
        return json.dumps(value, default=str)
    return str(value)


def epoch_of(row: dict[str, Any]) -> int:
    return int(row[STEP])


def rows_after(rows: Sequence[dict[str, Any]], epoch: int) -> list[dict[str, Any]]:
    """The rows of epochs after ``epoch`` (what a copy that holds epochs 1..``epoch`` still lacks)."""
    return [row for row in rows if epoch_of(row) > epoch]
