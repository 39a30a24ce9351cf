"""Config → averagers: builds the library's averagers that observe one (stacked) model during a run.

Every averager observes the same model; the training loop (:mod:`emabench.train.loop`) calls :func:`update_all`
after each optimizer step and evaluates :func:`is_per_epoch` ones every epoch. Post-hoc EMA is evaluated after
training, at each replica's stop step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from emabench.averaging import (
    EMA,
    SWA,
    TFEMA,
    Averager,
    BiasCorrectedEMA,
    ConstantEMA,
    PostHocEMA,
    PowerEMA,
    decay_for_horizon,
)
from emabench.config import (
    BiasCorrectedEMASpec,
    Config,
    ConstantEMASpec,
    PostHocSpec,
    PowerEMASpec,
    SWASpec,
    TFEMASpec,
    WarmupEMASpec,
)
from emabench.config.averager_specs import _DecaySpec


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return math.ceil(n_train / batch_size)


def seed_ema(model: nn.Module, configs: Sequence[Config]) -> EMA:
    """The seed's ``ema`` section; replicas may differ in ``beta`` only (one ceiling per replica)."""
    betas = [c.ema.beta for c in configs]
    ema = configs[0].ema
    return EMA(
        model,
        beta=betas[0] if len(set(betas)) == 1 else torch.tensor(betas),
        update_after_step=ema.update_after_step,
        update_every=ema.update_every,
        inv_gamma=ema.inv_gamma,
        power=ema.power,
        min_value=ema.min_value,
    )


def _beta(spec: _DecaySpec, batch_size: int, epoch_steps: int) -> float:
    if spec.beta is not None:
        return spec.beta
    horizon = spec.half_life
    return decay_for_horizon(
        horizon.value, horizon.unit, update_every=spec.update_every, batch_size=batch_size, steps_per_epoch=epoch_steps
    )


def build_averager(spec: object, model: nn.Module, *, batch_size: int, epoch_steps: int) -> Averager:
    """One extra averager from its config spec."""
    if isinstance(spec, WarmupEMASpec):
        return EMA(
            model,
            beta=_beta(spec, batch_size, epoch_steps),
            update_after_step=spec.update_after_step,
            update_every=spec.update_every,
            inv_gamma=spec.inv_gamma,
            power=spec.power,
            min_value=spec.min_value,
        )
    if isinstance(spec, ConstantEMASpec):
        beta = _beta(spec, batch_size, epoch_steps)
        return ConstantEMA(model, beta=beta, update_every=spec.update_every, update_after_step=spec.update_after_step)
    if isinstance(spec, TFEMASpec):
        return TFEMA(model, beta=_beta(spec, batch_size, epoch_steps), update_every=spec.update_every)
    if isinstance(spec, BiasCorrectedEMASpec):
        return BiasCorrectedEMA(model, beta=_beta(spec, batch_size, epoch_steps), update_every=spec.update_every)
    if isinstance(spec, SWASpec):
        every = spec.every_steps or epoch_steps
        return SWA(model, start_step=spec.start_epoch * epoch_steps, every=every)
    if isinstance(spec, PowerEMASpec):
        return PowerEMA(model, sigma_rel=spec.sigma_rel, gamma=spec.gamma, update_every=spec.update_every)
    if isinstance(spec, PostHocSpec):
        return PostHocEMA(
            model, sigma_rels=spec.sigma_rels, snapshot_every=spec.snapshot_every, update_every=spec.update_every
        )
    raise TypeError(f"no averager for {type(spec).__name__}")


def build_all(model: nn.Module, configs: Sequence[Config], *, n_train: int) -> dict[str, Averager]:
    """``{"ema": seed EMA, **extra averagers}`` in config order."""
    first = configs[0]
    epoch_steps = steps_per_epoch(n_train, first.train.batch_size)
    averagers: dict[str, Averager] = {"ema": seed_ema(model, configs)}
    for name, spec in first.averagers.items():
        averagers[name] = build_averager(spec, model, batch_size=first.train.batch_size, epoch_steps=epoch_steps)
    return averagers


def is_per_epoch(averager: Averager) -> bool:
    """Evaluated every epoch (all but post-hoc EMA, which only exists once synthesized)."""
    return not isinstance(averager, PostHocEMA)


def has_average(averager: Averager) -> bool:
    """False while an averager holds nothing yet (SWA before its first snapshot): its metrics are then NaN."""
    return getattr(averager, "n_averaged", 1) > 0


def decay_of(averager: Averager) -> float | torch.Tensor | None:
    """The decay the averager used at its last update, where the rule has one."""
    return getattr(averager, "decay", None)


def update_all(averagers: Sequence[Averager]) -> None:
    """Update every averager after an optimizer step (each is one fused ``torch._foreach_*`` call)."""
    for averager in averagers:
        averager.update()
