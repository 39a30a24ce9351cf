"""Exponential moving averages with a fixed ceiling: constant decay, TensorFlow's ramp, and bias correction.

All three keep ``d`` on the average: ``average ← d·average + (1 − d)·θ``, fused in one call. ``beta`` may be a float
or a 1-D tensor of length R for models stacking R replicas along dim 0. To choose ``beta`` from a horizon instead, use
:func:`emabench.averaging.decay_for_horizon`.

Cadence (see :mod:`emabench.averaging.base`): with ``t`` the optimizer step passed to ``update(t)`` (or the number of
calls), each averages at ``t = 1, k+1, 2k+1, …`` for ``k = update_every``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from emabench.averaging.base import Averager, BufferPolicy, CappedDecay, _like, per_tensor
from emabench.averaging.checks import Decay, check_decay, check_int


class ConstantEMA(CappedDecay, Averager):
    """EMA with a constant decay (torch ``swa_utils.get_ema_multi_avg_fn``, ema-pytorch without warm-up).

    At each averaging step ``t`` (``1, k+1, 2k+1, …``):

    - if ``t − 1 ≤ update_after_step``: ``average ← θ`` (copy; so the first update, after the delay, copies);
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
        dtype: torch.dtype | None = None,
    ) -> None:
        beta = check_decay(beta)
        update_every = check_int("update_every", update_every, 1)
        update_after_step = check_int("update_after_step", update_after_step, 0)
        super().__init__(model, buffers=buffers, dtype=dtype)
        self.beta = beta
        self.update_every = update_every
        self.update_after_step = update_after_step
        self._register_counter("decay", 0.0)

    def _weight(self, last: int, step: int) -> Decay | None:
        every = self.update_every
        if (step - 1) // every == (last - 1) // every:
            return None
        if step - 1 <= self.update_after_step:
            self._counts.decay = 0.0
            return 1.0  # copy
        beta = self.beta
        if type(beta) is float:
            self._counts.decay = beta
            return 1.0 - beta
        self._counts.decay = 1.0  # per replica: min(beta[r], 1) = beta[r], see CappedDecay
        return 1.0 - beta


class TFEMA(CappedDecay, Averager):
    """TensorFlow ``ExponentialMovingAverage(decay, num_updates)``, torch-ema ``use_num_updates``, Paddle (seed 003).

    The shadow starts as a copy of the model at construction (TF initialises each shadow variable to the variable's
    value). Every averaging step (``t = 1, k+1, 2k+1, …``) increments ``n`` and averages with

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
        dtype: torch.dtype | None = None,
    ) -> None:
        beta = check_decay(beta)
        update_every = check_int("update_every", update_every, 1)
        if isinstance(count_from, bool) or count_from not in (0, 1):
            raise ValueError(f"count_from must be 0 or 1, got {count_from!r}")
        super().__init__(model, buffers=buffers, dtype=dtype)
        self.beta = beta
        self.update_every = update_every
        self.count_from = int(count_from)
        self._register_counter("n_averaged", 0)
        self._register_counter("decay", 0.0)

    @property
    def n_averaged(self) -> int:
        """How many averaging updates have been made."""
        return self._counts.n_averaged

    def _weight(self, last: int, step: int) -> Decay | None:
        every = self.update_every
        if (step - 1) // every == (last - 1) // every:
            return None
        counts = self._counts
        n = counts.n_averaged + self.count_from
        counts.n_averaged += 1
        decay = (1.0 + n) / (10.0 + n)  # schedules.tf_decay written out, as in EMA
        beta = self.beta
        if type(beta) is float:
            decay = decay if decay < beta else beta
            counts.decay = decay
            return 1.0 - decay
        counts.decay = decay
        return 1.0 - beta.clamp(max=decay)


class BiasCorrectedEMA(Averager):
    """Zero-initialised EMA divided by its total weight: TF ``zero_debias``, Adam's bias correction (seeds 001/002).

    At the ``t``-th averaging update (at steps ``1, k+1, 2k+1, …``)

        ``m_t = β·m_{t−1} + (1 − β)·θ_t`` with ``m_0 = 0``,  ``average = m_t / (1 − β^t)``.

    The raw accumulator ``m`` is kept in ``accumulator`` (saved in ``state_dict``), in the average's dtype: in
    bfloat16 ``m`` stalls far below ``θ`` and the division then amplifies the error (a constant 2.0 averages to
    ~0.5), which is why the default keeps at least float32. The average equals a lerp with the effective decay
    ``d_t = (β − β^t)/(1 − β^t)`` (exposed as :attr:`decay`, a function of ``t``): ``d_1 = 0`` (the first update
    copies) and ``d_t → β``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        beta: float | torch.Tensor,
        update_every: int = 1,
        buffers: BufferPolicy = "average",
        dtype: torch.dtype | None = None,
    ) -> None:
        beta = check_decay(beta)
        update_every = check_int("update_every", update_every, 1)
        super().__init__(model, buffers=buffers, dtype=dtype)
        self.beta = beta
        self.update_every = update_every
        self._register_counter("n_averaged", 0)
        self.accumulator = copy.deepcopy(self.averaged_model)
        torch._foreach_zero_(self._local_tensors(self.accumulator))

    @property
    def decay(self) -> Decay:
        """The effective decay ``(β − β^t)/(1 − β^t)`` kept on the corrected average at the last update (0 before)."""
        t = self._counts.n_averaged
        if t == 0:
            return torch.zeros_like(self.beta) if isinstance(self.beta, torch.Tensor) else 0.0
        return (self.beta - self.beta**t) / (1.0 - self.beta**t)

    @property
    def n_averaged(self) -> int:
        """``t``: how many averaging updates have been made."""
        return self._counts.n_averaged

    @torch.no_grad()
    def _weight(self, last: int, step: int) -> None:
        every = self.update_every
        if (step - 1) // every == (last - 1) // every:
            return None
        self._counts.n_averaged += 1
        t = self._counts.n_averaged
        accumulator = self._local_tensors(self.accumulator)
        averaged, online = self.tensor_pairs()
        torch._foreach_lerp_(accumulator, _like(online, accumulator), per_tensor(1.0 - self.beta, accumulator))
        torch._foreach_copy_(averaged, accumulator)
        torch._foreach_div_(averaged, per_tensor(_one_minus_power(self.beta, t), averaged))
        self._copy_buffers()
        return None  # done here: the corrected average is not a lerp of the previous one


def _one_minus_power(beta: Decay, t: int) -> Decay:
    """``1 − β^t`` with Python's ``pow`` for every replica's β: a tensor ``pow`` may round differently by where a
    value lies in its vector, and replica r must divide exactly as it would alone."""
    if isinstance(beta, torch.Tensor):
        return torch.tensor([1.0 - b**t for b in beta.tolist()], dtype=torch.float64)
    return 1.0 - beta**t
