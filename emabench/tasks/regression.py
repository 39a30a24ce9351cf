"""Regression (seed 001): MSE loss; MSE, MAE and R² on the validation set, batched over replicas in float64."""

from __future__ import annotations

import torch

from emabench.tasks.base import Task
from emabench.tasks.metric_specs import BUILTIN_MARGINS, REGRESSION_METRICS


class Regression(Task):
    name = "regression"
    metrics = REGRESSION_METRICS
    plot_metric = "r2"
    primary_metric = "mse"
    equivalence_margin = BUILTIN_MARGINS["regression"]

    def outputs(self, n_classes: int | None) -> int:
        return 1

    def loss(self, out: torch.Tensor, target: torch.Tensor, smoothing: torch.Tensor | None = None) -> torch.Tensor:
        """``MSELoss`` per replica: ``mean((out − y)²)`` over the batch."""
        return (out - target).square().flatten(1).mean(1)

    def evaluate(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """``val_loss`` is the seed's ``MSELoss`` over the validation set (it equals ``mse``: the seed averages
        per-batch losses weighted by batch size); ``r2 = 1 − SS_res/SS_tot`` as ``sklearn.metrics.r2_score``.
        ``target``: ``(n, 1)`` for every replica, or ``(R, n, 1)`` one set per replica."""
        pred = out.double().flatten(1)
        if target.dim() == 3:  # one evaluation set per replica
            y = target.double().flatten(1)
            ss_tot = (y - y.mean(dim=1, keepdim=True)).square().sum(dim=1)
        else:
            y = target.double().flatten()
            ss_tot = (y - y.mean()).square().sum()
        err = pred - y
        mse = err.square().mean(dim=1)
        return {"val_loss": mse, "mse": mse, "mae": err.abs().mean(dim=1), "r2": 1.0 - err.square().sum(dim=1) / ss_tot}
