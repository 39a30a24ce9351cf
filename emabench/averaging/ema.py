"""Exponential moving average with the seed's warm-up schedule (seed 001, ema-pytorch semantics of that era)."""

from __future__ import annotations

import torch
from torch import nn

from emabench.averaging.base import Averager, BufferPolicy, CappedDecay
from emabench.averaging.checks import Decay, check_decay, check_int, check_number


class EMA(CappedDecay, Averager):
    """EMA of a model's weights with warm-up, exactly as seed 001's ``EMA`` class.

    Call :meth:`update` after every optimizer step (``update(step)`` with ``t`` = optimizer steps so far, or
    ``update()`` to count calls). It averages at steps ``t = 1, k+1, 2k+1, …`` (``k = update_every``), where:

    - if ``t − 1 ≤ update_after_step``: ``average ← θ`` (copy);
    - else (the first time: ``average ← θ`` first) ``average ← d·average + (1 − d)·θ`` with
      ``e = t − update_after_step − 1`` and ``d = clamp(1 − (1 + e/inv_gamma)^(−power), min_value, beta)``
      (``d = 0`` for ``e ≤ 0``).

    With a call at every step this is the seed's rule with its call counter ``s = t − 1``.

    ``beta`` may be a float or a 1-D tensor of length R for a model whose tensors stack R independent replicas
    along dim 0 (each replica then gets its own ceiling ``beta[r]``).

    Floating-point parameters (and buffers, with ``buffers="average"``) are averaged in one fused call, in ``dtype``
    (see :class:`~emabench.averaging.base.Averager`). ``state_dict()`` holds the average, the step, ``initted`` and
    the last ``decay``, so a resumed run continues the schedule where it stopped.
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
        dtype: torch.dtype | None = None,
    ) -> None:
        beta = check_decay(beta)
        update_after_step = check_int("update_after_step", update_after_step, 0)
        update_every = check_int("update_every", update_every, 1)
        inv_gamma = check_number("inv_gamma", inv_gamma, low=0.0, low_open=True)
        power = check_number("power", power, low=0.0, low_open=True)
        min_value = check_number("min_value", min_value, low=0.0, high=float(torch.as_tensor(beta).min()))
        super().__init__(model, buffers=buffers, dtype=dtype)
        self.beta = beta
        self.update_after_step = update_after_step
        self.update_every = update_every
        self.inv_gamma = inv_gamma
        self.power = power
        self.min_value = min_value
        self._register_counter("initted", False)  # "step" is registered by Averager
        self._register_counter("decay", 0.0)

    def _weight(self, last: int, step: int) -> Decay | None:
        every = self.update_every
        if (step - 1) // every == (last - 1) // every:
            return None  # no averaging point 1, k+1, 2k+1, … in (last, step]
        counts = self._counts
        after = self.update_after_step
        if step - 1 <= after:
            counts.decay = 0.0
            return 1.0  # copy during the delay
        if not counts.initted:
            self.copy_from_online()  # once more right before the first averaging update, as the seed does
            counts.initted = True
        # schedules.warmup_decay(step − after − 1, …) written out (e ≥ 1 here): inside a training loop a Python call
        # costs about as much as the whole lerp_ (see Averager.update); tests hold the two equal.
        decay = 1.0 - (1.0 + (step - after - 1) / self.inv_gamma) ** -self.power
        if decay < self.min_value:
            decay = self.min_value
        beta = self.beta
        if type(beta) is float:
            decay = decay if decay < beta else beta
            counts.decay = decay
            return 1.0 - decay
        counts.decay = decay  # per replica: min(beta[r], decay), see CappedDecay
        return 1.0 - beta.clamp(max=decay)
