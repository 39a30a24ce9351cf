"""What a task is: its loss, its metrics, and for each metric which direction is better.

Nothing in emabench guesses "lower is better" from a metric's name: the report, the tables and the verdicts read
:class:`MetricSpec` from the task that produced the run (``config.task``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MetricSpec:
    """A validation metric: its column name, which direction is better, and how to label it for people."""

    name: str
    higher_is_better: bool
    label: str

    def better(self, new: float, old: float) -> bool:
        """``new`` beats ``old`` in this metric's direction."""
        return new > old if self.higher_is_better else new < old


VAL_LOSS = MetricSpec("val_loss", higher_is_better=False, label="validation loss")


class Task(ABC):
    """A supervised task over stacked predictions: ``out`` is ``(R, B, outputs)``, one row per replica.

    Losses and metrics are per replica, ``(R,)``, never averaged across replicas: a replica's gradient must not depend
    on which others share its stack (the stacked loss is the sum of the per-replica losses).
    """

    name: str
    metrics: tuple[MetricSpec, ...]  # ``val_loss`` first; the metrics.csv and report columns, in order
    plot_metric: str  # the per-epoch figure beside the loss (r2.png, accuracy.png)
    # The report's primary question: this metric at the final epoch (``report.primary`` overrides it), and the
    # difference from the baseline within which two models count as equivalent: a number in the metric's units, or
    # a percentage of the baseline's mean such as "1%" (``report.margin`` overrides it).
    primary_metric: str
    equivalence_margin: float | str

    @abstractmethod
    def outputs(self, n_classes: int | None) -> int:
        """The model's output width."""

    @abstractmethod
    def loss(self, out: torch.Tensor, target: torch.Tensor, smoothing: torch.Tensor | None = None) -> torch.Tensor:
        """Per-replica training loss ``(R,)`` of a batch; ``target`` is ``(R, B, …)`` (each replica its own batch)."""

    @abstractmethod
    def evaluate(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{metric: (R,) float64}`` on a validation set shared by all replicas (``target``: ``(n, …)``)."""

    def metric(self, name: str) -> MetricSpec:
        for spec in self.metrics:
            if spec.name == name:
                return spec
        raise KeyError(f"task {self.name!r} has no metric {name!r} (it has {', '.join(m.name for m in self.metrics)})")

    @property
    def final_metrics(self) -> tuple[str, ...]:
        """The metrics of the final table (``metrics.csv``): every metric but the loss."""
        return tuple(m.name for m in self.metrics if m.name != VAL_LOSS.name)
