"""The seed's MLP, as R independent replicas stored in one flat parameter.

Seed 001's model is ``Linear(20,64)–ReLU–Dropout(0.2)–Linear(64,32)–ReLU–Dropout(0.2)–Linear(32,1)`` with
xavier-normal weights and zero biases. :class:`StackedMLP` holds R such networks as one ``(R, P)`` parameter and runs
them with batched matmuls, so a sweep of R runs costs about one run's Python overhead, while a single run (R = 1) is
the same network. Every replica is initialised from its own ``torch.Generator``; dropout masks are passed in by the
trainer, which draws them from the same per-replica generator (see :mod:`emabench.engine`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def layer_sizes(n_features: int, hidden_sizes: Sequence[int]) -> list[tuple[int, int]]:
    """``(in, out)`` of every Linear layer, ending in one output."""
    widths = [n_features, *hidden_sizes, 1]
    return list(zip(widths[:-1], widths[1:]))


class StackedMLP(nn.Module):
    """R independent MLPs with one architecture; ``flat[r]`` is replica r's parameter vector.

    Per layer the vector holds the weight ``(out, in)`` row-major, then the bias ``(out,)`` — the order of
    ``nn.Sequential(...).parameters()`` in the seed model, so :meth:`replica_module` round-trips exactly.
    """

    def __init__(self, n_features: int, hidden_sizes: Sequence[int], replicas: int) -> None:
        super().__init__()
        self.sizes = layer_sizes(n_features, hidden_sizes)
        self.replicas = replicas
        numel = sum(i * o + o for i, o in self.sizes)
        self.flat = nn.Parameter(torch.zeros(replicas, numel))

    def layers(self, flat: torch.Tensor | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Views ``(W: (R, out, in), b: (R, out))`` into ``flat`` for every layer."""
        flat = self.flat if flat is None else flat
        views, offset = [], 0
        for fan_in, fan_out in self.sizes:
            weight = flat[:, offset : offset + fan_in * fan_out].view(-1, fan_out, fan_in)
            offset += fan_in * fan_out
            views.append((weight, flat[:, offset : offset + fan_out]))
            offset += fan_out
        return views

    @torch.no_grad()
    def reset_parameters(self, generators: Sequence[torch.Generator], init: str = "xavier_normal") -> None:
        """Xavier weights (``nn.init.xavier_*_`` with each replica's generator, layer by layer), zero biases."""
        for r, generator in enumerate(generators):
            for (fan_in, fan_out), (weight, bias) in zip(self.sizes, self.layers()):
                w = torch.empty(fan_out, fan_in)
                if init == "xavier_normal":
                    nn.init.xavier_normal_(w, generator=generator)
                elif init == "xavier_uniform":
                    nn.init.xavier_uniform_(w, generator=generator)
                else:
                    raise ValueError(f"unknown init {init!r} (allowed: xavier_normal, xavier_uniform)")
                weight[r].copy_(w)
                bias[r].zero_()

    def forward(self, x: torch.Tensor, masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """``x``: ``(R, B, in)`` or ``(B, in)`` shared by all replicas; ``masks[i]``: ``(R, B, hidden_i)``
        already scaled by ``1/(1-p)`` (training), or ``None`` (evaluation: dropout is the identity)."""
        if x.dim() == 2:
            x = x.expand(self.replicas, -1, -1)
        layers = self.layers()
        for i, (weight, bias) in enumerate(layers):
            x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
            if i < len(layers) - 1:
                x = torch.relu(x)
                if masks is not None:
                    x = x * masks[i]
        return x

    def replica_module(self, r: int, dropout: float = 0.0) -> nn.Sequential:
        """Replica r as the seed's ``nn.Sequential`` (Linear–ReLU–Dropout…–Linear), weights copied."""
        modules: list[nn.Module] = []
        for i, ((fan_in, fan_out), (weight, bias)) in enumerate(zip(self.sizes, self.layers())):
            linear = nn.Linear(fan_in, fan_out, device=self.flat.device)
            with torch.no_grad():
                linear.weight.copy_(weight[r])
                linear.bias.copy_(bias[r])
            modules.append(linear)
            if i < len(self.sizes) - 1:
                modules += [nn.ReLU(), nn.Dropout(dropout)]
        return nn.Sequential(*modules)


def dropout_masks(
    generator: torch.Generator, n: int, hidden_sizes: Sequence[int], dropout: float
) -> list[torch.Tensor]:
    """One epoch of dropout masks for one replica: ``(n, h)`` per hidden layer, Bernoulli(1−p)/(1−p).

    Row i belongs to the i-th sample of the epoch's shuffled order, so every sample gets a fresh mask, exactly the
    distribution of ``nn.Dropout(p)`` in training mode.
    """
    keep = 1.0 - dropout
    if dropout == 0.0:
        return [torch.ones(n, h) for h in hidden_sizes]
    return [(torch.rand(n, h, generator=generator) < keep).float().div_(keep) for h in hidden_sizes]


def xavier_std(fan_in: int, fan_out: int) -> float:
    """Standard deviation of ``xavier_normal_`` with gain 1 (used by tests as an independent check)."""
    return math.sqrt(2.0 / (fan_in + fan_out))
