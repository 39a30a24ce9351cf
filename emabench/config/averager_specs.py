"""The averagers a config may list under ``averagers:``, tracked beside raw and the seed's ``ema``.

One pydantic model per rule (its update formula in its docstring), discriminated by ``kind``; :data:`AveragerSpec`
is their union. :mod:`emabench.train.averagers` builds the library's averagers from them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from emabench.config.base import _Section

BufferPolicy = Literal["average", "copy", "recalibrate"]
# average: float buffers (BatchNorm running statistics) averaged like the weights (the seed's choice); copy: taken
# from the live model at each update; recalibrate: re-estimated over the training data before each evaluation of
# the averaged model (torch's update_bn), the right statistics for the averaged weights.


class _AveragerSection(_Section):
    buffers: BufferPolicy = "average"


class HalfLife(_Section):
    """A decay horizon instead of a bare beta: the weight of a step halves after ``value`` steps/samples/epochs."""

    value: float = Field(gt=0, le=1e9)  # beyond that the per-update decay rounds to 1.0 in float64
    unit: Literal["steps", "samples", "epochs"]


class _DecaySpec(_AveragerSection):
    beta: float | None = Field(default=None, ge=0, lt=1)
    half_life: HalfLife | None = None
    update_every: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _one_horizon(self) -> _DecaySpec:
        if (self.beta is None) == (self.half_life is None):
            raise ValueError("give exactly one of beta or half_life")
        return self


class WarmupEMASpec(_DecaySpec):
    """The seed's EMA (warm-up ``clamp(1 − (1 + e/inv_gamma)^−power, min_value, beta)``)."""

    kind: Literal["ema"]
    update_after_step: int = Field(default=100, ge=0)  # the seed's warm-up settings, as the top-level ``ema``
    inv_gamma: float = Field(default=1.0, gt=0)
    power: float = Field(default=2 / 3, gt=0)
    min_value: float = Field(default=0.0, ge=0, lt=1)


class ConstantEMASpec(_DecaySpec):
    """``average ← β·average + (1 − β)·θ`` from the first update on (a copy before ``update_after_step``)."""

    kind: Literal["constant_ema"]
    update_after_step: int = Field(default=0, ge=0)


class TFEMASpec(_DecaySpec):
    """TensorFlow/Paddle ``num_updates``: ``d = min(β, (1 + n)/(10 + n))``."""

    kind: Literal["tf_ema"]


class BiasCorrectedEMASpec(_DecaySpec):
    """Zero-initialised EMA divided by ``1 − β^t`` (seeds 001/002)."""

    kind: Literal["bias_corrected_ema"]


class ScheduledEMASpec(_AveragerSection):
    """Seed 000's "small β early, larger later": the decay follows ``schedule``, a list of ``[start, decay]`` pairs
    (the first starting at 0) in ``unit`` steps or epochs, piecewise ``constant`` or ``linear`` in between; the first
    update copies. The decay actually used is recorded every epoch (``<name>_decay``)."""

    kind: Literal["scheduled_ema"]
    schedule: list[list[float]] = Field(min_length=1, max_length=1000)
    unit: Literal["steps", "epochs"] = "epochs"
    interpolation: Literal["constant", "linear"] = "constant"
    update_every: int = Field(default=1, ge=1)

    @field_validator("schedule")
    @classmethod
    def _pairs(cls, schedule: list[list[float]]) -> list[list[float]]:
        if any(len(entry) != 2 for entry in schedule):
            raise ValueError(f"every schedule entry is a [start, decay] pair, got {schedule}")
        starts = [entry[0] for entry in schedule]
        if starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])):
            raise ValueError(f"schedule starts must begin at 0 and increase, got {starts}")
        if not all(0 <= entry[1] < 1 for entry in schedule):
            raise ValueError(f"schedule decays must be in [0, 1), got {[entry[1] for entry in schedule]}")
        return schedule


class AdaptiveEMASpec(_AveragerSection):
    """Seed 000's adaptive β (:class:`emabench.averaging.AdaptiveEMA`): the decay climbs one rung of ``ladder``
    after an epoch in which this average's validation loss improves on its best by more than ``threshold``
    (relative), and descends one when the raw model's validation loss is below this average's by that margin."""

    kind: Literal["adaptive_ema"]
    ladder: list[float] = Field(default=[0.9, 0.99, 0.999, 0.9999], min_length=2, max_length=64)
    start: int = Field(default=0, ge=0)
    threshold: float = Field(default=0.0, ge=0, lt=1)
    update_every: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _valid_ladder(self) -> AdaptiveEMASpec:
        if not all(0 <= d < 1 for d in self.ladder) or any(b <= a for a, b in zip(self.ladder, self.ladder[1:])):
            raise ValueError(f"ladder must be increasing decays in [0, 1), got {self.ladder}")
        if self.start >= len(self.ladder):
            raise ValueError(f"start must index the ladder (0 to {len(self.ladder) - 1}), got {self.start}")
        return self


class SWASpec(_AveragerSection):
    """Equal average of snapshots from the end of epoch ``start_epoch`` on, every ``every_steps`` optimizer steps
    (``null``: once per epoch). Its learning-rate schedule (torch's SWALR) is ``train.swa_lr``, not part of the
    averager: an averager only observes. Buffers default to ``copy`` (torch's ``AveragedModel`` leaves them to
    ``update_bn``; ``recalibrate`` does that before each evaluation)."""

    kind: Literal["swa"]
    start_epoch: int = Field(ge=0)
    every_steps: int | None = Field(default=None, ge=1)
    buffers: BufferPolicy = "copy"


def _check_sigma_rel(value: float | None) -> float | None:
    if value is not None:
        from emabench.averaging import sigma_rel_to_gamma

        sigma_rel_to_gamma(value)  # raises ValueError naming the allowed range
    return value


class PowerEMASpec(_AveragerSection):
    """EDM2's power-function EMA ``β(t) = (1 − Δt/t)^(γ+1)``, by ``sigma_rel`` or ``gamma``."""

    kind: Literal["power_ema"]
    sigma_rel: float | None = None
    gamma: float | None = Field(default=None, gt=-1, le=1e6)
    update_every: int = Field(default=1, ge=1)

    @field_validator("sigma_rel")
    @classmethod
    def _valid_sigma_rel(cls, value: float | None) -> float | None:
        return _check_sigma_rel(value)

    @model_validator(mode="after")
    def _one_profile(self) -> PowerEMASpec:
        if (self.sigma_rel is None) == (self.gamma is None):
            raise ValueError("give exactly one of sigma_rel or gamma")
        return self


class PostHocSpec(_AveragerSection):
    """Post-hoc EMA (EDM2 Algorithm 3): track ≥ 2 power-EMA profiles, snapshot them every ``snapshot_every``
    steps, and synthesize each ``sigma_rel`` in ``targets`` after training (reported with its fit error)."""

    kind: Literal["posthoc"]
    sigma_rels: list[float] = Field(min_length=2)
    snapshot_every: int = Field(ge=1)
    targets: list[float] = Field(min_length=1)
    update_every: int = Field(default=1, ge=1)

    @field_validator("sigma_rels", "targets")
    @classmethod
    def _valid_profiles(cls, values: list[float]) -> list[float]:
        for value in values:
            _check_sigma_rel(value)
        return values


AveragerSpec = Annotated[
    WarmupEMASpec
    | ConstantEMASpec
    | TFEMASpec
    | BiasCorrectedEMASpec
    | ScheduledEMASpec
    | AdaptiveEMASpec
    | SWASpec
    | PowerEMASpec
    | PostHocSpec,
    Field(discriminator="kind"),
]
