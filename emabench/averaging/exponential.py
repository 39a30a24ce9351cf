"""Exponential moving averages with a fixed ceiling: constant decay, TensorFlow's ramp, and bias correction.

All three keep ``d`` on the average: ``average ← d·average + (1 − d)·θ``, fused in one ``torch._foreach_lerp_`` call.
``beta`` may be a float or a 1-D tensor of length R for models stacking R replicas along dim 0. To choose ``beta`` from
a horizon instead, use :func:`emabench.averaging.decay_for_horizon`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from emabench.averaging.base import Averager, BufferPolicy, Decay, check_decay, check_int, per_tensor
from emabench.averaging.schedules import tf_decay


class ConstantEMA(Averager):
    """EMA with a constant decay (torch ``swa_utils.get_ema_multi_avg_fn``, ema-pytorch without warm-up).

    With ``s`` the number of earlier ``update()`` calls:

    - if ``s % update_every != 0``: nothing;
    - elif ``s ≤ update_after_step``: ``average ← θ`` (copy; so the first update, after the delay, copies);
    - else ``average ← β·average + (1 − β)·θ``.

    With ``update_after_step=0`` this is ``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(β))``:
    EMA(0.9) of θ = 1, 2, 3 gives 1, 1.1, 1.29.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        beta: float | torch.Tensor,
        update_every: int = 1,
        update_after_step: int = 0,
        buffers: BufferPolicy = "average",
    ) -> None:
        beta = check_decay(beta)
        check_int("update_every", update_every, 1)
        check_int("update_after_step", update_after_step, 0)
        super().__init__(model, buffers=buffers)
        self.beta = beta
        self.update_every = update_every
        self.update_after_step = update_after_step
        self._decay: Decay = 0.0

    @property
    def decay(self) -> Decay:
        """The decay used by the last update: 0 while copying, then ``beta``."""
        return self._decay

    def update(self) -> None:  # autograd: handled by the tensor paths (base.py)
        step = self._step
        self._step += 1
        if step % self.update_every != 0:
            return
        if step <= self.update_after_step:
            self._decay = 0.0
            self.copy_from_online()
            return
        self._decay = self.beta
        self._lerp_to_online(1.0 - self.beta)


class TFEMA(Averager):
    """TensorFlow ``ExponentialMovingAverage(decay, num_updates)``, torch-ema ``use_num_updates``, Paddle (seed 003).

    The shadow starts as a copy of the model at construction (TF initialises each shadow variable to the variable's
    value). Every ``update_every``-th call (calls 1, k+1, 2k+1, …) increments ``n`` and averages with

        ``d = min(β, (1 + n)/(10 + n))``,  ``average ← d·average + (1 − d)·θ``.

    ``n`` counts averaging updates. ``count_from=1`` (default) uses ``n = 1`` at the first update, as torch-ema does
    and as TF does when ``num_updates`` is the ``global_step`` read after ``apply_gradients``: d = 0.181818 at n = 1,
    0.55 at 10, 0.918182 at 100, 0.991089 at 1000. ``count_from=0`` reproduces seed 003's Paddle class, which reads
    its counter before incrementing it (first ``d = min(β, 0.1)``).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        beta: float | torch.Tensor,
        update_every: int = 1,
        count_from: int = 1,
        buffers: BufferPolicy = "average",
    ) -> None:
        beta = check_decay(beta)
        check_int("update_every", update_every, 1)
        if count_from not in (0, 1):
            raise ValueError(f"count_from must be 0 or 1, got {count_from!r}")
        super().__init__(model, buffers=buffers)
        self.beta = beta
        self.update_every = update_every
        self.count_from = count_from
        self._decay: Decay = 0.0
        self._register_counter("n_averaged", 0)

    @property
    def decay(self) -> Decay:
        """The decay ``d`` used by the last update (0 before any)."""
        return self._decay

    @property
    def n_averaged(self) -> int:
        """How many averaging updates have been made."""
        return self._n_averaged

    def update(self) -> None:  # autograd: handled by the tensor paths (base.py)
        step = self._step
        self._step += 1
        if step % self.update_every != 0:
            return
        n = self._n_averaged + self.count_from
        self._n_averaged += 1
        if isinstance(self.beta, float):
            self._decay = tf_decay(n, beta=self.beta)
        else:
            self._decay = self.beta.clamp(max=tf_decay(n, beta=1.0))
        self._lerp_to_online(1.0 - self._decay)


class BiasCorrectedEMA(Averager):
    """Zero-initialised EMA divided by its total weight: TF ``zero_debias``, Adam's bias correction (seeds 001/002).

    At the ``t``-th averaging update (every ``update_every``-th call: calls 1, k+1, 2k+1, …)

        ``m_t = β·m_{t−1} + (1 − β)·θ_t`` with ``m_0 = 0``,  ``average = m_t / (1 − β^t)``.

    The raw accumulator ``m`` is kept in ``accumulator`` (saved in ``state_dict``). The average equals a lerp with
    the effective decay ``d_t = (β − β^t)/(1 − β^t)`` (exposed as :attr:`decay`): ``d_1 = 0`` (the first update
    copies) and ``d_t → β``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        beta: float | torch.Tensor,
        update_every: int = 1,
        buffers: BufferPolicy = "average",
    ) -> None:
        beta = check_decay(beta)
        check_int("update_every", update_every, 1)
        super().__init__(model, buffers=buffers)
        self.beta = beta
        self.update_every = update_every
        self._decay: Decay = 0.0
        self._register_counter("n_averaged", 0)
        self.accumulator = copy.deepcopy(self.averaged_model)
        torch._foreach_zero_(self._averaged_tensors(self.accumulator))

    @property
    def decay(self) -> Decay:
        """The effective decay ``(β − β^t)/(1 − β^t)`` kept on the corrected average at the last update."""
        return self._decay

    @property
    def n_averaged(self) -> int:
        """``t``: how many averaging updates have been made."""
        return self._n_averaged

    @torch.no_grad()
    def update(self) -> None:
        step = self._step
        self._step += 1
        if step % self.update_every != 0:
            return
        self._n_averaged += 1
        t = self._n_averaged
        accumulator = self._averaged_tensors(self.accumulator)
        averaged, online = self.tensor_pairs()
        if averaged:
            torch._foreach_lerp_(accumulator, online, per_tensor(1.0 - self.beta, accumulator))
            torch._foreach_copy_(averaged, accumulator)
            torch._foreach_div_(averaged, per_tensor(1.0 - self.beta**t, averaged))
        self._copy_buffers()
        self._decay = (self.beta - self.beta**t) / (1.0 - self.beta**t)
