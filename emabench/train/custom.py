"""A user's own ``nn.Module`` (``model: {name: custom}``), built for the training loop: one run at a time as a stack of
one (:class:`SingleModel`), or with ``model.stack: vmap`` R runs as one model through ``torch.func``
(:class:`~emabench.stack.vmapped.VmapStack`). Each replica's module is built by the user's factory with torch's
global generator seeded by its run's seed and checked on one batch first (:func:`user_module`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from emabench.config import Config
from emabench.errors import ConfigError
from emabench.stack import models
from emabench.stack.vmapped import VmapStack
from emabench.tasks.sources import import_callable


class SingleModel(nn.Module):
    """A user's ``nn.Module`` trained by the same loop as a stack of one: input ``(1, B, …)`` or ``(B, …)``, output
    ``(1, B, outputs)``. Its parameters keep their own shapes (no replica dimension)."""

    def __init__(self, module: nn.Module, sample_shape: Sequence[int]) -> None:
        super().__init__()
        self.module = module
        self.sample_shape = tuple(sample_shape)
        self.replicas = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) == self.sample_shape:
            return self.module(x).unsqueeze(0)
        return self.module(x[0]).unsqueeze(0)

    def dropouts(self) -> list[nn.Module]:
        return []  # the module's own nn.Dropout layers draw from torch's global generator (seeded per run)

    @torch.no_grad()
    def pack(self) -> None:
        """Pre-set gradients (one buffer when the parameters share a dtype), so backward accumulates in place."""
        params = [p for p in self.parameters() if p.requires_grad]
        grads = [torch.zeros_like(p) for p in params]
        models.pack_(grads)
        for param, grad in zip(params, grads):
            param.grad = grad


def user_module(
    factory: str, kwargs: dict[str, Any], sample_shape: Sequence[int], outputs: int, seed: int
) -> nn.Module:
    """Call ``factory(**kwargs)`` with torch's global generator seeded by ``seed`` and check one forward pass."""
    build_module = import_callable(factory, "model.factory")
    torch.manual_seed(seed)
    try:
        module = build_module(**kwargs)
    except (Exception, SystemExit) as err:  # the user's code (an exit() in it too: it must not end emabench)
        raise ConfigError(f"model.factory: {factory} raised {type(err).__name__}: {err}") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model.factory: {factory} must return a torch.nn.Module, got {type(module).__name__}")
    probe = torch.zeros(2, *sample_shape)
    try:
        with torch.no_grad():
            out = module.eval()(probe)
    except (Exception, SystemExit) as err:
        raise ConfigError(
            f"model.factory: {factory}'s module fails on a batch of shape {tuple(probe.shape)} "
            f"({type(err).__name__}: {str(err)[:200]})"
        ) from None
    module.train()
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, outputs):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"model.factory: {factory}'s module must map (B, *{tuple(sample_shape)}) to (B, {outputs}), got {got}"
        )
    return module


def build(configs: Sequence[Config], sample_shape: Sequence[int], outputs: int) -> nn.Module:
    """The user's module for ``configs``: a :class:`VmapStack` of one module per config (``model.stack: vmap``,
    when ``vmap`` can run it), else one module as a :class:`SingleModel` (a stack of one)."""
    spec = configs[0].model
    modules = [user_module(spec.factory, spec.kwargs, sample_shape, outputs, c.seed) for c in configs]
    if spec.stack == "vmap" and vmap_problem(configs[0], tuple(sample_shape), outputs) is None:
        return VmapStack(modules, sample_shape)
    if len(modules) != 1:
        raise ValueError("a custom model that is not stacked trains one run at a time")
    return SingleModel(modules[0], sample_shape)


@functools.lru_cache(maxsize=64)
def _vmap_problem(factory: str, kwargs: str, sample_shape: tuple[int, ...], outputs: int) -> str | None:
    modules = [user_module(factory, json.loads(kwargs), sample_shape, outputs, seed) for seed in (0, 1)]
    stack = VmapStack(modules, sample_shape)
    try:
        stack(torch.zeros(2, 3, *sample_shape)).sum().backward()
        stack.eval()(torch.zeros(3, *sample_shape))
    except Exception as err:  # what vmap cannot batch: data-dependent control flow, .item(), in-place on inputs
        return f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
    return None


def vmap_problem(config: Config, sample_shape: tuple[int, ...], outputs: int) -> str | None:
    """Why ``torch.func.vmap`` cannot train ``config`` 's module (two copies, a training step and an evaluation on
    zeros, tried once per factory and arguments), or ``None`` when it can."""
    spec = config.model
    return _vmap_problem(spec.factory, json.dumps(spec.kwargs, sort_keys=True, default=str), sample_shape, outputs)
