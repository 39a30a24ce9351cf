"""Choose an EMA decay from the horizon it should average over, rather than from a bare number like 0.999."""

from __future__ import annotations

import math
from typing import Literal

from emabench.averaging.checks import check_int

HorizonUnit = Literal["steps", "samples", "epochs"]


def decay_for_horizon(
    half_life: float,
    unit: HorizonUnit = "steps",
    *,
    update_every: int = 1,
    batch_size: int | None = None,
    steps_per_epoch: int | None = None,
) -> float:
    """The per-update decay that halves a weight's influence after ``half_life`` optimizer steps, samples or epochs.

    The half-life is first converted to optimizer steps ``h`` (``samples / batch_size``, ``epochs · steps_per_epoch``);
    an averager updating every ``k = update_every`` steps then needs ``d = 0.5^(k/h)`` per update. Inverse of
    :func:`emabench.averaging.half_life` (in updates): 0.99 ↔ 69.0, 0.999 ↔ 692.8, 0.9999 ↔ 6931.1 updates.
    EDM2's ``TraditionalEMA`` uses the samples form, ``β = 0.5^(batch_size / half-life in images)``.
    """
    if not (math.isfinite(half_life) and half_life > 0):
        raise ValueError(f"half_life must be a finite number > 0, got {half_life}")
    check_int("update_every", update_every, 1)
    if unit == "steps":
        steps = half_life
    elif unit == "samples":
        steps = half_life / check_int("batch_size", batch_size, 1)
    elif unit == "epochs":
        steps = half_life * check_int("steps_per_epoch", steps_per_epoch, 1)
    else:
        raise ValueError(f"unit must be 'steps', 'samples' or 'epochs', got {unit!r}")
    return 0.5 ** (update_every / steps)
