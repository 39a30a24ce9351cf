"""Argument checks shared by the averagers: one ``ValueError`` naming the argument, its allowed range and the value.

Every numeric argument is checked finite as well as in range: ``nan <= 0`` is false, so a bare ``<= 0`` test lets a
NaN through to poison the average.
"""

from __future__ import annotations

import math
import numbers
import operator

import torch

Decay = float | torch.Tensor  # a float, or a 1-D tensor with one value per replica (leading dim of every tensor)
# Per-replica decays are held in float64, the precision of a Python float: replica r of a stack then computes its
# lerp weight ``1 − d_r`` exactly as the same averager with ``beta=float(beta[r])`` computes ``1 − d``, and both
# round it to the average's dtype only inside the update, so a replica averages bit for bit as it would alone.


def check_decay(beta: float | torch.Tensor, name: str = "beta") -> Decay:
    """Validate a decay in ``[0, 1)``, given as a float or a 1-D per-replica tensor; return it as a float or a
    float64 tensor (see :data:`Decay`)."""
    if isinstance(beta, bool):
        raise ValueError(f"{name} must be in [0, 1), got {beta!r}")
    try:
        betas = torch.as_tensor(beta, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be a number in [0, 1) or a 1-D tensor of them, got {beta!r}") from err
    if betas.numel() == 0 or not bool(((betas >= 0) & (betas < 1)).all()):
        raise ValueError(f"{name} must be in [0, 1), got {beta}")
    if isinstance(beta, torch.Tensor):
        if beta.dim() != 1 or not beta.is_floating_point():
            raise ValueError(f"{name} as a tensor must be 1-D floating point (one value per replica), got {beta}")
        return betas
    return float(beta)


def check_int(name: str, value: object, minimum: int) -> int:
    """Validate an integer option ``>= minimum`` (bools refused; numpy and other integral types accepted)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(
    name: str,
    value: object,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Validate a finite real number in the interval ``low .. high`` (open or closed at each end); return it as float.

    The message names the interval as written, e.g. ``inv_gamma must be a finite number in (0, inf), got nan``.
    """
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    number = float(value)
    inside = (number > low if low_open else number >= low) and (number < high if high_open else number <= high)
    if not (math.isfinite(number) and inside):
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return number


def check_dtype(dtype: object) -> torch.dtype | None:
    """``None`` or a floating-point ``torch.dtype`` (the dtype an average is kept and computed in)."""
    if dtype is None:
        return None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be None or a floating-point torch.dtype (e.g. torch.float32), got {dtype!r}")
    return dtype


def checked_step(step: object, last: int) -> int:
    """The optimizer step passed to ``update(step)``: an integer >= 1 that increases from call to call."""
    try:
        if isinstance(step, bool):
            raise TypeError
        value = operator.index(step)  # ints, numpy integers, 0-dim integer tensors
    except TypeError:
        raise ValueError(f"step must be an integer >= 1 (optimizer steps taken so far), got {step!r}") from None
    if value < 1:
        raise ValueError(f"step must be an integer >= 1 (optimizer steps taken so far), got {value}")
    if value <= last:
        raise ValueError(f"step must increase from one update to the next: got step {value} after step {last}")
    return value
