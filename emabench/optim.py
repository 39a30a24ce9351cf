"""Adam, ReduceLROnPlateau and early stopping, one instance per replica of a stacked model.

``torch.optim.Adam`` keeps one learning rate per parameter tensor, but a stacked sweep needs one per *replica*
(row of the flat parameter), each with its own plateau scheduler. These follow torch's formulas line for line and
are tested against ``torch.optim.Adam`` and ``torch.optim.lr_scheduler.ReduceLROnPlateau``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


class StackedAdam:
    """Adam (``torch.optim.Adam``, L2 weight decay, no amsgrad) on a ``(R, P)`` parameter, lr per replica.

    ``g ← g + wd·θ;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
    θ ← θ − lr/(1−β1^t) · m / (√v / √(1−β2^t) + eps)``.
    """

    def __init__(
        self,
        param: torch.Tensor,
        lr: Sequence[float],
        weight_decay: Sequence[float],
        betas: tuple[float, float],
        eps: float,
    ) -> None:
        self.param = param
        self.lrs = [float(x) for x in lr]
        self.weight_decays = [float(x) for x in weight_decay]
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.step_count = 0
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self._refresh()

    def _refresh(self) -> None:
        # One shared value takes torch's scalar code path exactly; differing values broadcast a column.
        column = lambda v: torch.tensor(v, dtype=self.param.dtype, device=self.param.device).unsqueeze(1)  # noqa: E731
        self._lr = self.lrs[0] if len(set(self.lrs)) == 1 else column(self.lrs)
        self._wd = self.weight_decays[0] if len(set(self.weight_decays)) == 1 else column(self.weight_decays)

    def set_lrs(self, lrs: Sequence[float]) -> None:
        if list(lrs) != self.lrs:
            self.lrs = [float(x) for x in lrs]
            self._refresh()

    @torch.no_grad()
    def step(self) -> None:
        grad = self.param.grad
        if isinstance(self._wd, float):
            if self._wd != 0:
                grad = grad.add(self.param, alpha=self._wd)
        else:
            grad = grad.addcmul(self.param, self._wd)
        self.exp_avg.lerp_(grad, 1 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        self.step_count += 1
        bias_correction1 = 1 - self.beta1**self.step_count
        bias_correction2_sqrt = math.sqrt(1 - self.beta2**self.step_count)
        denom = (self.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
        if isinstance(self._lr, float):
            self.param.addcdiv_(self.exp_avg, denom, value=-self._lr / bias_correction1)
        else:
            self.param.addcdiv_(self.exp_avg * (-self._lr / bias_correction1), denom)

    def zero_grad(self) -> None:
        self.param.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "lrs": list(self.lrs),
            "step_count": self.step_count,
            "exp_avg": self.exp_avg,
            "exp_avg_sq": self.exp_avg_sq,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_lrs(state["lrs"])
        self.step_count = int(state["step_count"])
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])


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
