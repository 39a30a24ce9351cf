"""The strict base of every config section: unknown keys refused, no type coercion, no inf/nan, frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Section(BaseModel):
    # strict: YAML already gives typed scalars, so "0.1" (a string) for a float is a mistake, not a number.
    # allow_inf_nan=False: no knob takes inf or nan, and ``gamma: .inf`` or ``half_life: .inf`` passed the bounds
    # only to fail later, when training built its averagers.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
