"""Seed 000's β schedules: a decay that follows a plan ("small β early, larger later"), or the validation results.

Both keep ``d`` on the average, ``average ← d·average + (1 − d)·θ``, at steps ``t = 1, k+1, 2k+1, …``
(``k = update_every``; ``t`` the optimizer step passed to ``update(t)``, or the number of calls), and the first of
those updates copies (``d = 0``), as torch's ``AveragedModel`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from emabench.averaging.base import Averager, BufferPolicy
from emabench.averaging.checks import Decay, check_int, check_number
from emabench.averaging.exponential import ConstantEMA

ScheduleUnit = Literal["steps", "epochs"]
Interpolation = Literal["constant", "linear"]


class ScheduledEMA(Averager):
    """EMA whose decay follows a piecewise schedule of the training position: ``[(start, decay), …]``.

    It averages at steps ``t = 1, k+1, 2k+1, …`` (``k = update_every``; the first update copies). The position of
    step ``t`` is what training had completed before it: ``p = t − 1`` steps (``unit="steps"``) or
    ``p = (t − 1)/steps_per_epoch`` epochs (``unit="epochs"``). With the entries
    ``(s_0 = 0, d_0), (s_1, d_1), …`` (starts increasing, decays in [0, 1)):

    - ``interpolation="constant"``: ``d(p) = d_i`` for ``s_i ≤ p < s_{i+1}`` (by epoch: the whole epoch uses one
      decay, ``p`` rounded down to completed epochs);
    - ``interpolation="linear"``: ``d(p) = d_i + (d_{i+1} − d_i)·(p − s_i)/(s_{i+1} − s_i)`` between entries;
    - after the last entry the last decay holds.

    ``ScheduledEMA(model, schedule=[(0, 0.9), (1000, 0.99), (5000, 0.999)])`` averages with 0.9 for the first
    1000 steps, 0.99 up to step 5000, then 0.999. An entry's decay 0 copies: ``[(0, 0.0), (100, 0.99)]`` follows the
    model for 100 steps first. The decay actually used by the last update is :attr:`decay` (0 at the first, which
    copies) and is saved in ``state_dict``. The schedule is shared by all replicas of a stacked model.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        schedule: Sequence[tuple[float, float]],
        unit: ScheduleUnit = "steps",
        steps_per_epoch: int | None = None,
        interpolation: Interpolation = "constant",
        update_every: int = 1,
        buffers: BufferPolicy = "average",
        dtype: torch.dtype | None = None,
    ) -> None:
        if unit not in ("steps", "epochs"):
            raise ValueError(f"unit must be 'steps' or 'epochs', got {unit!r}")
        if interpolation not in ("constant", "linear"):
            raise ValueError(f"interpolation must be 'constant' or 'linear', got {interpolation!r}")
        starts, decays = _check_schedule(schedule)
        steps_per_epoch = 1 if unit == "steps" else check_int("steps_per_epoch", steps_per_epoch, 1)
        update_every = check_int("update_every", update_every, 1)
        super().__init__(model, buffers=buffers, dtype=dtype)
        self.starts, self.decays = starts, decays
        self.steps_per_epoch = steps_per_epoch
        self.unit = unit
        self.interpolation = interpolation
        self.update_every = update_every
        self._register_counter("n_averaged", 0)
        self._register_counter("decay", 0.0)

    @property
    def decay(self) -> float:
        """The decay used by the last update (0 before any, and at the first, which copies)."""
        return self._counts.decay

    @property
    def n_averaged(self) -> int:
        return self._counts.n_averaged

    def decay_at(self, step: int) -> float:
        """The schedule's decay for an update at optimizer step ``step`` (1-based)."""
        completed = step - 1
        if self.interpolation == "constant":
            position = completed // self.steps_per_epoch
        else:
            position = completed / self.steps_per_epoch
        i = sum(1 for start in self.starts if start <= position) - 1  # the entry in force (starts[0] = 0)
        if self.interpolation == "constant" or i + 1 == len(self.starts):
            return self.decays[i]
        start, end = self.starts[i], self.starts[i + 1]
        return self.decays[i] + (self.decays[i + 1] - self.decays[i]) * (position - start) / (end - start)

    def _weight(self, last: int, step: int) -> float | None:
        every = self.update_every
        if (step - 1) // every == (last - 1) // every:
            return None
        counts = self._counts
        decay = self.decay_at(step) if counts.n_averaged else 0.0  # the first update copies
        counts.n_averaged += 1
        counts.decay = decay
        return 1.0 - decay


class AdaptiveEMA(ConstantEMA):
    """Constant-decay EMA whose decay moves along a ladder from validation results (seed 000's adaptive β).

    The decay is ``ladder[level]``; updates as :class:`ConstantEMA`, at steps ``1, k+1, 2k+1, …``
    (``k = update_every``), the first one copying. After each
    evaluation, call :meth:`observe` with the validation loss of the averaged model ``a`` and of the raw model
    ``r``; with ``best`` the lowest ``a`` that counted as an improvement so far (``+inf`` at first) and
    ``τ = threshold``:

    1. if ``r < a − τ·|a|`` (the raw model pulls ahead: the average lags behind training): ``level ← level − 1``;
    2. else if ``a < best − τ·|best|`` (the average improves and leads): ``level ← level + 1`` and ``best ← a``;
    3. else nothing changes.

    ``level`` stays within ``[0, len(ladder) − 1]``; a NaN loss compares false everywhere and changes nothing. The
    rule is deterministic; ``level`` and ``best`` are buffers, so ``state_dict`` resumes it exactly.

    For a stacked model of R replicas pass ``replicas=R``: each replica then has its own level and best, the losses
    are 1-D (length R), and the decay is per replica.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        ladder: Sequence[float] = (0.9, 0.99, 0.999, 0.9999),
        start: int = 0,
        threshold: float = 0.0,
        replicas: int | None = None,
        update_every: int = 1,
        buffers: BufferPolicy = "average",
        dtype: torch.dtype | None = None,
    ) -> None:
        if isinstance(ladder, (str, bytes)) or not isinstance(ladder, Sequence) or len(ladder) < 2:
            raise ValueError(f"ladder must be a sequence of at least two decays in [0, 1), got {ladder!r}")
        rungs = [check_number("ladder", d, low=0.0, high=1.0, high_open=True) for d in ladder]
        if any(b <= a for a, b in zip(rungs, rungs[1:])):
            raise ValueError(f"ladder must be strictly increasing, got {rungs}")
        start = check_int("start", start, 0)
        if start >= len(rungs):
            raise ValueError(f"start must be an index into ladder (0 to {len(rungs) - 1}), got {start}")
        shape = () if replicas is None else (check_int("replicas", replicas, 1),)
        threshold = check_number("threshold", threshold, low=0.0, high=1.0, high_open=True)
        beta = rungs[start] if replicas is None else torch.full(shape, rungs[start], dtype=torch.float64)
        super().__init__(model, beta=beta, update_every=update_every, buffers=buffers, dtype=dtype)
        self.ladder = torch.tensor(rungs, dtype=torch.float64)
        self.threshold = threshold
        self.register_buffer("level", torch.full(shape, start, dtype=torch.long))
        self.register_buffer("best", torch.full(shape, float("inf"), dtype=torch.float64))
        self.register_load_state_dict_post_hook(_beta_from_level)

    @property
    def decay(self) -> Decay:
        """The decay in force, ``ladder[level]`` (per replica: a tensor); 0 until the first update that averages."""
        if self._counts.decay == 0.0:
            return torch.zeros_like(self.beta) if isinstance(self.beta, torch.Tensor) else 0.0
        return self.beta

    def observe(self, averaged_val_loss: float | torch.Tensor, raw_val_loss: float | torch.Tensor) -> Decay:
        """Apply the rule to one evaluation's losses (floats, or length-R tensors); return the new decay."""
        averaged = self._losses(averaged_val_loss, "averaged_val_loss")
        raw = self._losses(raw_val_loss, "raw_val_loss")
        raw_ahead = raw < self._margin_below(averaged)
        improved = ~raw_ahead & (averaged < self._margin_below(self.best))
        move = improved.long() - raw_ahead.long()
        self.level.copy_((self.level + move).clamp(0, len(self.ladder) - 1))
        self.best.copy_(torch.where(improved, averaged, self.best))
        self._set_beta()
        return self.beta

    def _margin_below(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss − τ·|loss|`` (``loss`` itself where infinite: the first finite loss always improves on +inf)."""
        return torch.where(loss.isfinite(), loss - self.threshold * loss.abs(), loss)

    def _losses(self, value: float | torch.Tensor, name: str) -> torch.Tensor:
        losses = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
        if losses.shape != self.level.shape:
            want = "a number" if self.level.dim() == 0 else f"shape ({self.level.shape[0]},)"
            raise ValueError(f"{name} must be {want} (one loss per replica), got shape {tuple(losses.shape)}")
        return losses

    def _set_beta(self) -> None:
        """The decay of the current level: a float, or a per-replica tensor (beta's own dtype)."""
        decays = self.ladder[self.level]
        self.beta = float(decays) if decays.dim() == 0 else decays.to(self.beta.dtype)


def _beta_from_level(module: AdaptiveEMA, incompatible_keys: object) -> None:
    module._set_beta()


def _check_schedule(schedule: object) -> tuple[list[float], list[float]]:
    """``([s_0 = 0, s_1, …], [d_0, d_1, …])`` from ``[(start, decay), …]``: starts finite, increasing, from 0."""
    message = "schedule must be a list of (start, decay) pairs, the first starting at 0"
    if isinstance(schedule, (str, bytes)) or not isinstance(schedule, Sequence) or not schedule:
        raise ValueError(f"{message}, got {schedule!r}")
    starts, decays = [], []
    for entry in schedule:
        if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence) or len(entry) != 2:
            raise ValueError(f"{message}, got the entry {entry!r}")
        starts.append(check_number("schedule start", entry[0], low=0.0))
        decays.append(check_number("schedule decay", entry[1], low=0.0, high=1.0, high_open=True))
    if starts[0] != 0:
        raise ValueError(f"{message}, got a first start of {schedule[0][0]!r}")
    if any(b <= a for a, b in zip(starts, starts[1:])):
        raise ValueError(f"schedule starts must increase strictly, got {starts}")
    return starts, decays
