"""Exponential moving average with the seed's warm-up schedule (seed 001, ema-pytorch semantics of that era)."""

from __future__ import annotations

import torch
from torch import nn

from emabench.averaging.base import Averager, BufferPolicy, check_decay, check_int
from emabench.averaging.schedules import warmup_decay


class EMA(Averager):
    """EMA of a model's weights with warm-up, exactly as seed 001's ``EMA`` class.

    Call :meth:`update` after every optimizer step. With ``s`` the number of earlier ``update()`` calls:

    - if ``s % update_every != 0``: nothing;
    - elif ``s <= update_after_step``: ``average ← θ`` (copy);
    - else (the first time: ``average ← θ`` first) ``average ← d·average + (1 − d)·θ`` with
      ``e = max(s + 1 − update_after_step − 1, 0)`` and
      ``d = 0 if e ≤ 0 else clamp(1 − (1 + e/inv_gamma)^(−power), min_value, beta)``.

    ``beta`` may be a float or a 1-D tensor of length R for a model whose tensors stack R independent replicas
    along dim 0 (each replica then gets its own ceiling ``beta[r]``).

    Floating-point parameters (and buffers, with ``buffers="average"``) are averaged in one fused
    ``torch._foreach_lerp_`` call. ``state_dict()`` holds the average and the step counter, so a resumed run continues
    the schedule where it stopped.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        beta: float | torch.Tensor = 0.999,
        update_after_step: int = 100,
        update_every: int = 1,
        inv_gamma: float = 1.0,
        power: float = 2 / 3,
        min_value: float = 0.0,
        buffers: BufferPolicy = "average",
    ) -> None:
        beta = check_decay(beta)
        check_int("update_after_step", update_after_step, 0)
        check_int("update_every", update_every, 1)
        if inv_gamma <= 0:
            raise ValueError(f"inv_gamma must be > 0, got {inv_gamma}")
        if power <= 0:
            raise ValueError(f"power must be > 0, got {power}")
        if not (0 <= min_value <= float(torch.as_tensor(beta).min())):
            raise ValueError(f"min_value must be in [0, beta], got {min_value}")
        super().__init__(model, buffers=buffers)
        self.beta = beta
        self.update_after_step = update_after_step
        self.update_every = update_every
        self.inv_gamma = float(inv_gamma)
        self.power = float(power)
        self.min_value = float(min_value)
        self._decay: float | torch.Tensor = 0.0
        self._register_counter("initted", False)  # "step" (update() calls) is registered by Averager

    @property
    def decay(self) -> float | torch.Tensor:
        """The decay ``d`` used by the last update that averaged (0 while copying); a tensor for per-replica beta."""
        return self._decay

    def _core_decay(self, step: int) -> float:
        """``warmup_decay(e)`` with ``e = step − update_after_step − 1``; per-replica ceilings come later."""
        ceiling = self.beta if isinstance(self.beta, float) else 1.0
        epoch = step - self.update_after_step - 1
        return warmup_decay(epoch, beta=ceiling, inv_gamma=self.inv_gamma, power=self.power, min_value=self.min_value)

    def update(self) -> None:  # no @torch.no_grad(): each tensor path below handles autograd itself
        step = self._step
        self._step = step + 1
        if step % self.update_every != 0:
            return
        if step <= self.update_after_step or not self._initted:
            self.copy_from_online()  # during the delay, and once more right before the first averaging update
            if step <= self.update_after_step:
                return
            self._initted = True
        core = self._core_decay(step + 1)
        if isinstance(self.beta, float):
            self._decay = core
        else:
            self._decay = self.beta.clamp(max=core) if core > 0 else torch.zeros_like(self.beta)
        self._lerp_to_online(1.0 - self._decay)
