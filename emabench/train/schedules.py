"""Learning-rate schedules as pure functions of the step or epoch (nanoGPT's ``get_lr``, EDM2's ``learning_rate``).

A replica's learning rate is ``lr_r(t) = base_r · factor(t) · plateau_r``: ``base_r`` its configured ``lr``,
``factor`` one of the schedules below (shared by a stack), ``plateau_r`` its ReduceLROnPlateau multiplier
(:mod:`emabench.train.control`). ``t`` counts what the schedule is ``per``: epochs (0 for the first epoch; the lr is
constant within an epoch) or optimizer steps (0 for the first step). ``total`` is the schedule's length ``T`` in the
same unit (``max_epochs`` or ``max_epochs · steps_per_epoch``); after ``T`` the factor stays at its last value.

Each factor equals torch's ``lr_scheduler`` counterpart after ``t`` calls of ``scheduler.step()``
(``tests/test_schedules.py``): ``constant`` (no scheduler), ``cosine`` (``CosineAnnealingLR(T_max=T,
eta_min=final·base)``), ``linear`` (``LinearLR(1, final, T)``), ``polynomial`` (``PolynomialLR(T, power)`` when
``final = 0``), ``step`` (``StepLR(step_size, gamma)``); an optional linear warm-up of ``W`` units is
``LinearLR(start, 1, W)`` followed by the schedule over the remaining ``T − W`` units (``SequentialLR``).

SWA's learning rate (torch ``SWALR``), which takes over from a start epoch, is
:func:`emabench.averaging.swa_annealed_lr`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

ScheduleName = Literal["constant", "cosine", "linear", "polynomial", "step"]
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "linear", "polynomial", "step")


@dataclass(frozen=True)
class Schedule:
    """One schedule's shape: ``factor(t)`` of the base learning rate, ``t`` in units of ``per``.

    ``final`` is the factor reached at ``total`` (cosine, linear, polynomial); ``power`` the polynomial's exponent;
    ``step_size``/``gamma`` the step schedule's period and multiplier; ``warmup`` the length of a linear warm-up
    from ``warmup_start`` to 1 (0: none).
    """

    name: str = "constant"
    total: int = 1
    final: float = 0.0
    power: float = 1.0
    step_size: int = 1
    gamma: float = 0.1
    warmup: int = 0
    warmup_start: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.name!r}")
        if not 0 <= self.warmup < self.total:
            raise ValueError(f"need 0 <= warmup < total, got warmup={self.warmup}, total={self.total}")

    def factor(self, t: int) -> float:
        """The multiplier of the base learning rate for unit ``t`` (0-based)."""
        if t < self.warmup:
            return self.warmup_start + (1.0 - self.warmup_start) * t / self.warmup
        return decay_factor(self, t - self.warmup, self.total - self.warmup)


def decay_factor(schedule: Schedule, t: int, total: int) -> float:
    """The schedule after its warm-up: ``t`` units into a decay of ``total`` units."""
    name, final = schedule.name, schedule.final
    x = min(t, total) / total if total > 0 else 1.0
    if name == "constant":
        return 1.0
    if name == "cosine":
        return final + (1.0 - final) * (1.0 + math.cos(math.pi * x)) / 2.0
    if name == "linear":
        return 1.0 + (final - 1.0) * x
    if name == "polynomial":
        return final + (1.0 - final) * (1.0 - x) ** schedule.power
    return schedule.gamma ** (t // schedule.step_size)  # step: no end
