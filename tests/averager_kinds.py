"""Every averager kind of emabench.averaging, built the same way, for the tests that must hold for all of them."""

from __future__ import annotations

from collections.abc import Callable

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
)

# name -> factory(model, **extra) with cadences > 1 where the rule has one, so the tests see skipped steps
KINDS: dict[str, Callable[..., Averager]] = {
    "ema": lambda m, **kw: EMA(m, beta=0.99, update_after_step=3, update_every=2, **kw),
    "constant": lambda m, **kw: ConstantEMA(m, beta=0.9, update_every=2, update_after_step=3, **kw),
    "tf": lambda m, **kw: TFEMA(m, beta=0.99, update_every=3, **kw),
    "bias_corrected": lambda m, **kw: BiasCorrectedEMA(m, beta=0.95, update_every=2, **kw),
    "swa": lambda m, **kw: SWA(m, start_step=4, every=3, **kw),
    "power": lambda m, **kw: PowerEMA(m, sigma_rel=0.15, update_every=3, **kw),
    "posthoc": lambda m, **kw: PostHocEMA(m, sigma_rels=(0.05, 0.2), snapshot_every=6, update_every=3, **kw),
    "scheduled": lambda m, **kw: ScheduledEMA(m, schedule=[(0, 0.5), (5, 0.9), (12, 0.99)], update_every=2, **kw),
    "adaptive": lambda m, **kw: AdaptiveEMA(m, ladder=(0.5, 0.9, 0.99), start=1, update_every=2, **kw),
}


def net(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)).to(dtype)


def perturb(model: nn.Module, step: int) -> None:
    """A deterministic, step-dependent change of every parameter (a stand-in for an optimizer step)."""
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.add_(torch.sin(torch.arange(p.numel(), dtype=torch.float32).view_as(p) + step + i).to(p.dtype) * 0.1)


def evaluated(averager: Averager) -> nn.Module:
    """The averaged model, synthesized first for post-hoc EMA (which holds no average before)."""
    if isinstance(averager, PostHocEMA):
        averager.synthesize(sigma_rel=0.1)
    return averager.averaged_model
