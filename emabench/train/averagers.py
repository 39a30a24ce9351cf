"""Config → averagers: the library's averagers that observe one (stacked) model during a run, and what the
training loop asks of them.

Every averager observes the same model; the loop calls ``update(step)`` with the optimizer step count after each
optimizer step, evaluates the :func:`is_per_epoch` ones every epoch (re-estimating BatchNorm statistics first for
``buffers: recalibrate``), lets adaptive ones :func:`observe` the epoch's validation losses, and synthesizes
post-hoc ones at each replica's stop step (:func:`synthesized`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from emabench.averaging import (
    EMA,
    SWA,
    TFEMA,
    AdaptiveEMA,
    Averager,
    BiasCorrectedEMA,
    ConstantEMA,
    PostHocEMA,
    PowerEMA,
    ScheduledEMA,
    decay_for_horizon,
    update_bn,
)
from emabench.config import (
    AdaptiveEMASpec,
    BiasCorrectedEMASpec,
    Config,
    ConstantEMASpec,
    PostHocSpec,
    PowerEMASpec,
    ScheduledEMASpec,
    SWASpec,
    TFEMASpec,
    WarmupEMASpec,
)
from emabench.config.averager_specs import _DecaySpec
from emabench.train.build import epoch_steps as steps_in_epoch


def _library_buffers(policy: str) -> str:
    """``recalibrate`` keeps the live model's statistics between evaluations (``copy``) and re-estimates them for
    the averaged weights before each evaluation."""
    return "copy" if policy == "recalibrate" else policy


def seed_ema(model: nn.Module, configs: Sequence[Config]) -> EMA:
    """The seed's ``ema`` section; replicas may differ in ``beta`` only (one ceiling per replica)."""
    betas = [c.ema.beta for c in configs]
    ema = configs[0].ema
    return EMA(
        model,
        beta=betas[0] if len(set(betas)) == 1 else torch.tensor(betas, dtype=torch.float64),
        update_after_step=ema.update_after_step,
        update_every=ema.update_every,
        inv_gamma=ema.inv_gamma,
        power=ema.power,
        min_value=ema.min_value,
        buffers=_library_buffers(ema.buffers),
    )


def _beta(spec: _DecaySpec, batch_size: int, epoch_steps: int) -> float:
    if spec.beta is not None:
        return spec.beta
    horizon = spec.half_life
    return decay_for_horizon(
        horizon.value, horizon.unit, update_every=spec.update_every, batch_size=batch_size, steps_per_epoch=epoch_steps
    )


def build_averager(spec: Any, model: nn.Module, *, batch_size: int, epoch_steps: int, replicas: int) -> Averager:
    """One extra averager from its config spec (``replicas``: the stack size, for per-replica adaptive state)."""
    common = {"buffers": _library_buffers(spec.buffers)}
    if isinstance(spec, (WarmupEMASpec, ConstantEMASpec, TFEMASpec, BiasCorrectedEMASpec)):
        common |= {"beta": _beta(spec, batch_size, epoch_steps), "update_every": spec.update_every}
    if isinstance(spec, WarmupEMASpec):
        return EMA(
            model,
            update_after_step=spec.update_after_step,
            inv_gamma=spec.inv_gamma,
            power=spec.power,
            min_value=spec.min_value,
            **common,
        )
    if isinstance(spec, ConstantEMASpec):
        return ConstantEMA(model, update_after_step=spec.update_after_step, **common)
    if isinstance(spec, TFEMASpec):
        return TFEMA(model, **common)
    if isinstance(spec, BiasCorrectedEMASpec):
        return BiasCorrectedEMA(model, **common)
    if isinstance(spec, ScheduledEMASpec):
        return ScheduledEMA(
            model,
            schedule=[(start, decay) for start, decay in spec.schedule],
            unit=spec.unit,
            steps_per_epoch=epoch_steps,
            interpolation=spec.interpolation,
            update_every=spec.update_every,
            **common,
        )
    if isinstance(spec, AdaptiveEMASpec):
        return AdaptiveEMA(
            model,
            ladder=spec.ladder,
            start=spec.start,
            threshold=spec.threshold,
            replicas=replicas,
            update_every=spec.update_every,
            **common,
        )
    if isinstance(spec, SWASpec):
        return SWA(model, start_step=spec.start_epoch * epoch_steps, every=spec.every_steps or epoch_steps, **common)
    if isinstance(spec, PowerEMASpec):
        return PowerEMA(model, sigma_rel=spec.sigma_rel, gamma=spec.gamma, update_every=spec.update_every, **common)
    if isinstance(spec, PostHocSpec):
        return PostHocEMA(
            model,
            sigma_rels=spec.sigma_rels,
            snapshot_every=spec.snapshot_every,
            update_every=spec.update_every,
            **common,
        )
    raise TypeError(f"no averager for {type(spec).__name__}")


def build_all(model: nn.Module, configs: Sequence[Config], *, n_train: int) -> dict[str, Averager]:
    """``{"ema": seed EMA, **extra averagers}`` in config order."""
    first = configs[0]
    epoch_steps = steps_in_epoch(first, n_train)
    averagers: dict[str, Averager] = {"ema": seed_ema(model, configs)}
    for name, spec in first.averagers.items():
        averagers[name] = build_averager(
            spec, model, batch_size=first.train.batch_size, epoch_steps=epoch_steps, replicas=len(configs)
        )
    return averagers


def recalibrated(config: Config) -> set[str]:
    """The averagers whose BatchNorm statistics are re-estimated before each evaluation (``buffers: recalibrate``)."""
    names = {"ema"} if config.ema.buffers == "recalibrate" else set()
    return names | {name for name, spec in config.averagers.items() if spec.buffers == "recalibrate"}


def recalibrate(averager: Averager, batches: Iterable[torch.Tensor]) -> None:
    """torch's ``update_bn`` on the averaged model: statistics re-estimated over one pass of ``batches``."""
    update_bn(batches, averager)


def is_per_epoch(averager: Averager) -> bool:
    """Evaluated every epoch (all but post-hoc EMA, which only exists once synthesized)."""
    return not isinstance(averager, PostHocEMA)


def has_average(averager: Averager) -> bool:
    """False while an averager holds nothing yet (SWA before its first snapshot): its metrics are then NaN."""
    return getattr(averager, "n_averaged", 1) > 0


def decay_of(averager: Averager) -> float | torch.Tensor | None:
    """The decay the averager used at its last update, where the rule has one."""
    return getattr(averager, "decay", None)


def observe(averager: Averager, name: str, metrics: dict[str, dict[str, torch.Tensor]]) -> None:
    """Adaptive rules read this epoch's validation losses (their own and raw's), one per replica."""
    if isinstance(averager, AdaptiveEMA) and name in metrics:
        averager.observe(metrics[name]["val_loss"].cpu(), metrics["raw"]["val_loss"].cpu())


def synthesized(config: Config, averagers: dict[str, Averager], step: int) -> Iterator[tuple[str, Averager, float]]:
    """Post-hoc EMA at ``step``: for every target ``sigma_rel`` of every post-hoc averager, load the synthesis into
    its ``averaged_model`` and yield ``(model name, averager, fit error)`` for the caller to evaluate."""
    for name, spec in config.averagers.items():
        if not isinstance(spec, PostHocSpec):
            continue
        averager = averagers[name]
        for target in spec.targets:
            # the profiles at this stop step join the periodic snapshots for this synthesis only, so the result
            # neither lags behind the last snapshot nor depends on when other replicas stopped
            with averager.current_snapshot():
                _, fit_error = averager.synthesize(sigma_rel=target, step=step)
            yield f"{name}_{target:g}", averager, fit_error


@torch.no_grad()
def select_replicas(averager: Averager, index: torch.Tensor, old: int) -> None:
    """Keep the replicas at ``index`` in everything the averager holds per replica: its averaged copies (stacked
    models), per-replica betas and adaptive state, post-hoc snapshots."""
    for module in averager.modules():
        select = getattr(module, "select_replicas", None)
        if select is not None and not isinstance(module, Averager):
            select(index)
        if not isinstance(module, Averager):
            continue
        beta = getattr(module, "beta", None)
        if isinstance(beta, torch.Tensor) and beta.dim() == 1 and beta.shape[0] == old:
            module.beta = beta[index.to(beta.device)]
        for key, buffer in list(module._buffers.items()):
            if buffer is not None and buffer.dim() >= 1 and buffer.shape[0] == old:
                module._buffers[key] = buffer.index_select(0, index.to(buffer.device))
        if isinstance(module, PostHocEMA):
            for snapshot in module._snapshots:
                snapshot["state"] = {
                    k: v.index_select(0, index.to(v.device)) if v.dim() >= 1 and v.shape[0] == old else v
                    for k, v in snapshot["state"].items()
                }
    for module in averager.modules():
        if isinstance(module, Averager):
            module.refresh()
