"""Power-function EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models", EDM2).

The average at time ``t`` weighs the past by ``f(τ) = (γ + 1)·τ^γ / t^(γ+1)`` on ``[0, t]`` (Eq. 2): its length
scales with training, so its *relative* width ``σ_rel`` (std of ``f`` over ``t``) stays fixed. ``γ > −1`` is needed for
``f`` to be integrable; ``σ_rel(γ)`` is largest, ``≈ 0.3003``, at ``γ = (√5 − 3)/2`` and tends to 0 as ``γ → ∞``.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from emabench.averaging.base import Averager, BufferPolicy
from emabench.averaging.checks import check_int

GAMMA_AT_WIDEST = (math.sqrt(5.0) - 3.0) / 2.0  # argmax of σ_rel(γ): root of γ² + 3γ + 1 = 0
# Far beyond any useful profile (σ_rel ≈ 1/γ for large γ: 1e-6 ↔ 1e6, an average of the last ~millionth of
# training), and inside floats: σ_rel⁻² and (γ + 2)²(γ + 3) overflow for the extremes a config can still write.
GAMMA_MAX = 1e6
SIGMA_REL_MIN = 1e-6


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def gamma_to_sigma_rel(gamma: float) -> float:
    """EDM2 Eq. 123: ``σ_rel = sqrt((γ + 1) / ((γ + 2)²(γ + 3)))``, for ``γ > −1``."""
    if not (_is_real(gamma) and math.isfinite(gamma) and -1.0 < gamma <= GAMMA_MAX):
        raise ValueError(f"gamma must be in (-1, {GAMMA_MAX:g}], got {gamma}")
    return math.sqrt((gamma + 1.0) / ((gamma + 2.0) ** 2 * (gamma + 3.0)))


SIGMA_REL_MAX = gamma_to_sigma_rel(GAMMA_AT_WIDEST)  # ≈ 0.30028: no power-function profile is wider


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """EDM2 Eq. 126 / Algorithm 2: the largest real root of ``γ³ + 7γ² + (16 − σ⁻²)γ + (12 − σ⁻²) = 0``.

    The cubic is Eq. 123 squared, ``(γ + 2)²(γ + 3) = σ⁻²(γ + 1)``; its largest root is a valid exponent (``γ > −1``)
    exactly when ``0 < σ_rel ≤ SIGMA_REL_MAX ≈ 0.3003``, and lies on the branch ``γ ≥ (√5 − 3)/2 ≈ −0.382``.
    Solved in closed form (trigonometric method; the cubic has three real roots there). 0.05 → 16.9722,
    0.10 → 6.9372, 0.20 → 1.8262.
    """
    if not (_is_real(sigma_rel) and math.isfinite(sigma_rel) and SIGMA_REL_MIN <= sigma_rel <= SIGMA_REL_MAX):
        raise ValueError(f"sigma_rel must be in [{SIGMA_REL_MIN:g}, {SIGMA_REL_MAX:.5f}], got {sigma_rel}")
    s = sigma_rel**-2
    a, b, c = 7.0, 16.0 - s, 12.0 - s
    p = b - a * a / 3.0  # depressed cubic x³ + p·x + q with γ = x − a/3
    q = 2.0 * a**3 / 27.0 - a * b / 3.0 + c
    r = math.sqrt(-p / 3.0)
    cos_3phi = max(-1.0, min(1.0, 3.0 * q / (2.0 * p * r)))
    return 2.0 * r * math.cos(math.acos(cos_3phi) / 3.0) - a / 3.0


def power_function_beta(gamma: float, t: int, delta_t: int) -> float:
    """EDM2 Eq. 127: the decay ``β = (1 − Δt/t)^(γ+1)`` for an update at step ``t``, ``Δt`` steps after the last one."""
    return (1.0 - delta_t / t) ** (gamma + 1.0)


class PowerEMA(Averager):
    """Power-function EMA: at optimizer steps ``t = 1, k+1, 2k+1, …`` (``k = update_every``; ``t`` passed to
    ``update(t)``, or the number of calls)

        ``β = (1 − Δt/t)^(γ+1)``,  ``average ← β·average + (1 − β)·θ_t``

    with ``Δt = t − t_last`` the steps since the previous update (``t_last = 0`` at first, so the first update
    copies). Using ``Δt`` keeps the profile right for ``update_every > 1`` and for callers that skip steps;
    ema-pytorch's ``KarrasEMA`` uses ``Δt = 1`` and on a ramp θ_t = t drifts to 0.44·T instead of
    (γ+1)/(γ+2)·T = 0.888·T (γ = 6.94, every 10).

    Give exactly one of ``gamma`` (> −1) or ``sigma_rel`` (in (0, 0.3003]). ``t`` is the optimizer step: pass it
    to ``update(t)`` when the averager is created after training started (counting calls would shorten the profile).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        gamma: float | None = None,
        sigma_rel: float | None = None,
        update_every: int = 1,
        buffers: BufferPolicy = "average",
        dtype: torch.dtype | None = None,
    ) -> None:
        if (gamma is None) == (sigma_rel is None):
            raise ValueError(f"give exactly one of gamma or sigma_rel, got gamma={gamma}, sigma_rel={sigma_rel}")
        if gamma is None:
            gamma = sigma_rel_to_gamma(sigma_rel)  # validates sigma_rel: finite, in [1e-6, 0.3003]
        sigma_rel = gamma_to_sigma_rel(gamma)  # validates gamma: finite, in (-1, 1e6]
        update_every = check_int("update_every", update_every, 1)
        super().__init__(model, buffers=buffers, dtype=dtype)
        self.gamma = float(gamma)
        self.sigma_rel = sigma_rel
        self.update_every = update_every
        self._register_counter("last_update_step", 0)
        self._register_counter("decay", 0.0)

    @property
    def decay(self) -> float:
        """``β`` used by the last update (0 at the first, which copies)."""
        return self._counts.decay

    @property
    def last_update_step(self) -> int:
        """The step ``t`` of the last update: the time the current average describes (0 before any)."""
        return self._counts.last_update_step

    def _weight(self, last: int, step: int) -> float | None:
        every = self.update_every
        if (step - 1) // every == (last - 1) // every:
            return None
        counts = self._counts
        decay = power_function_beta(self.gamma, step, step - counts.last_update_step)
        counts.last_update_step = step
        counts.decay = decay
        return 1.0 - decay  # 1.0 (a copy) at the first update
