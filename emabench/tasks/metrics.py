"""Regression metrics in torch, batched over replicas (float64, to agree with sklearn to ~1e-12)."""

from __future__ import annotations

import torch

METRICS = ("val_loss", "mse", "mae", "r2")


def regression_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """``pred``: ``(R, n, 1)``, ``target``: ``(n, 1)`` → ``{metric: (R,)}``.

    ``val_loss`` is the seed's ``MSELoss`` over the validation set (it equals ``mse``: the seed averages per-batch
    losses weighted by batch size); ``r2 = 1 − SS_res/SS_tot`` as ``sklearn.metrics.r2_score``.
    """
    pred = pred.double().flatten(1)
    target = target.double().flatten()
    err = pred - target
    mse = err.square().mean(dim=1)
    ss_tot = (target - target.mean()).square().sum()
    return {
        "val_loss": mse,
        "mse": mse,
        "mae": err.abs().mean(dim=1),
        "r2": 1.0 - err.square().sum(dim=1) / ss_tot,
    }
