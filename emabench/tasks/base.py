"""What a task is: its loss, its metrics, and for each metric which direction is better.

Nothing in emabench guesses "lower is better" from a metric's name: the report, the tables and the verdicts read
:class:`MetricSpec` from the task that produced the run (``config.task``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from emabench.tasks.metric_specs import VAL_LOSS, MetricSet, MetricSpec

__all__ = ["VAL_LOSS", "MetricSpec", "Task"]


class Task(MetricSet, ABC):
    """A supervised task over stacked predictions: ``out`` is ``(R, B, outputs)``, one row per replica.

    Losses and metrics are per replica, ``(R,)``, never averaged across replicas: a replica's gradient must not depend
    on which others share its stack (the stacked loss is the sum of the per-replica losses).
    """

    @abstractmethod
    def outputs(self, n_classes: int | None) -> int:
        """The model's output width."""

    @abstractmethod
    def loss(self, out: torch.Tensor, target: torch.Tensor, smoothing: torch.Tensor | None = None) -> torch.Tensor:
        """Per-replica training loss ``(R,)`` of a batch; ``target`` is ``(R, B, …)`` (each replica its own batch)."""

    @abstractmethod
    def evaluate(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{metric: (R,) float64}`` on a validation set shared by all replicas (``target``: ``(n, …)``)."""
