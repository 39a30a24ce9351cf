"""ReduceLROnPlateau and early stopping, one instance per replica of a stacked model.

They follow torch's formulas line for line and are tested against ``torch.optim.lr_scheduler.ReduceLROnPlateau``.
"""

from __future__ import annotations

import math
from typing import Any


class PlateauScheduler:
    """``ReduceLROnPlateau`` (mode ``min``) for one replica: returns the learning rate for the next epoch."""

    def __init__(
        self,
        lr: float,
        *,
        factor: float,
        patience: int,
        threshold: float,
        threshold_mode: str,
        cooldown: int,
        min_lr: float,
        eps: float = 1e-8,
    ) -> None:
        self.lr = lr
        self.factor, self.patience, self.threshold = factor, patience, threshold
        self.threshold_mode, self.cooldown, self.min_lr, self.eps = threshold_mode, cooldown, min_lr, eps
        self.best = math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _is_better(self, value: float) -> bool:
        if self.threshold_mode == "rel":
            return value < self.best * (1.0 - self.threshold)
        return value < self.best - self.threshold

    def step(self, value: float) -> float:
        if self._is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            new_lr = max(self.lr * self.factor, self.min_lr)
            if self.lr - new_lr > self.eps:
                self.lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return self.lr

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        vars(self).update(state)


class EarlyStopping:
    """The seed's rule: a new best resets the counter; stop once ``patience`` epochs pass without one."""

    def __init__(self, patience: int | None) -> None:
        self.patience = patience
        self.best = math.inf
        self.best_epoch = 0
        self.counter = 0

    def step(self, value: float, epoch: int) -> bool:
        """Record this epoch's monitored loss; True when training should stop after this epoch."""
        if value < self.best:
            self.best, self.best_epoch, self.counter = value, epoch, 0
        else:
            self.counter += 1
        return self.patience is not None and self.counter >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
