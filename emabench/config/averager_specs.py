"""The averagers a config may list under ``averagers:`` (issue 3), tracked beside raw and the seed's ``ema``.

One pydantic model per rule (its update formula in its docstring), discriminated by ``kind``; :data:`AveragerSpec`
is their union. :mod:`emabench.train.averagers` builds the library's averagers from them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from emabench.config.base import _Section


class HalfLife(_Section):
    """A decay horizon instead of a bare beta: the weight of a step halves after ``value`` steps/samples/epochs."""

    value: float = Field(gt=0, le=1e9)  # beyond that the per-update decay rounds to 1.0 in float64
    unit: Literal["steps", "samples", "epochs"]


class _DecaySpec(_Section):
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
    update_after_step: int = Field(ge=0)
    inv_gamma: float = Field(gt=0)
    power: float = Field(gt=0)
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


class SWASpec(_Section):
    """Equal average of snapshots from the end of epoch ``start_epoch`` on, every ``every_steps`` optimizer steps
    (``null``: once per epoch). With ``swa_lr`` the learning rate anneals to it over ``anneal_epochs`` (torch's
    SWALR) from that epoch on, replacing the plateau scheduler — which changes the raw trajectory too."""

    kind: Literal["swa"]
    start_epoch: int = Field(ge=0)
    every_steps: int | None = Field(default=None, ge=1)
    swa_lr: float | None = Field(default=None, gt=0)
    anneal_epochs: int = Field(default=10, ge=0)
    anneal_strategy: Literal["cos", "linear"] = "cos"


def _check_sigma_rel(value: float | None) -> float | None:
    if value is not None:
        from emabench.averaging import sigma_rel_to_gamma

        sigma_rel_to_gamma(value)  # raises ValueError naming the allowed range
    return value


class PowerEMASpec(_Section):
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


class PostHocSpec(_Section):
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
    WarmupEMASpec | ConstantEMASpec | TFEMASpec | BiasCorrectedEMASpec | SWASpec | PowerEMASpec | PostHocSpec,
    Field(discriminator="kind"),
]
