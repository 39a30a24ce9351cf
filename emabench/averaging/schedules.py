"""Decay schedules as pure functions of the update count.

``d`` is always the weight kept on the average: ``average ← d·average + (1 − d)·θ``.
"""

from __future__ import annotations

import math


def warmup_decay(
    epoch: float, *, beta: float, inv_gamma: float = 1.0, power: float = 2 / 3, min_value: float = 0.0
) -> float:
    """@crowsonkb's EMA warm-up, as in ema-pytorch, timm ``ModelEmaV3`` and the seed:

    ``d(e) = clamp(1 − (1 + e/inv_gamma)^(−power), min_value, beta)`` for ``e > 0``, and ``0`` for ``e ≤ 0``.
    With ``inv_gamma=1, power=2/3`` it reaches 0.999 only after ~31.6k updates.
    """
    if epoch <= 0:
        return 0.0
    value = 1.0 - (1.0 + epoch / inv_gamma) ** -power
    return min(max(value, min_value), beta)


def tf_decay(num_updates: int, *, beta: float) -> float:
    """TensorFlow ``ExponentialMovingAverage(num_updates=n)`` / Paddle / torch-ema: ``min(beta, (1+n)/(10+n))``."""
    return min(beta, (1.0 + num_updates) / (10.0 + num_updates))


def half_life(decay: float) -> float:
    """Updates for a weight to fall to one half: ``h = ln 0.5 / ln d`` (0.999 → 692.8); ``inf`` for ``d = 1``."""
    if decay <= 0.0:
        return 0.0
    if decay >= 1.0:
        return math.inf
    return math.log(0.5) / math.log(decay)


def decay_from_half_life(half_life_updates: float) -> float:
    """Inverse of :func:`half_life`: ``d = 0.5^(1/h)``."""
    if not (math.isfinite(half_life_updates) and half_life_updates > 0):
        raise ValueError(f"half-life must be a finite number > 0 of updates, got {half_life_updates}")
    return 0.5 ** (1.0 / half_life_updates)
