"""The seed's MLP, as R independent replicas trained with batched matmuls.

Seed 001's model is ``Linear(20,64)–ReLU–Dropout(0.2)–Linear(64,32)–ReLU–Dropout(0.2)–Linear(32,1)`` with
xavier-normal weights and zero biases. :class:`StackedMLP` holds R such networks, layer by layer, as contiguous
``(R, out, in)`` weights and ``(R, out)`` biases, so a sweep of R runs costs about one run's Python overhead while a
single run (R = 1) is the same network. Every replica is initialised from its own ``torch.Generator``; dropout masks
are passed in by the trainer, which draws them from the same per-replica generator (see :mod:`emabench.train.loop`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from emabench.averaging.flat import pack_


def layer_sizes(n_features: int, hidden_sizes: Sequence[int]) -> list[tuple[int, int]]:
    """``(in, out)`` of every Linear layer, ending in one output."""
    widths = [n_features, *hidden_sizes, 1]
    return list(zip(widths[:-1], widths[1:]))


class StackedMLP(nn.Module):
    """R independent MLPs with one architecture; ``weights[i][r]``, ``biases[i][r]`` are replica r's layer i.

    ``parameters()`` yields weight, bias, weight, bias, … — the order of the seed's ``nn.Sequential``, each with a
    leading replica dimension (what per-replica optimizers and averagers broadcast over).
    """

    def __init__(self, n_features: int, hidden_sizes: Sequence[int], replicas: int) -> None:
        super().__init__()
        self.sizes = layer_sizes(n_features, hidden_sizes)
        for i, (fan_in, fan_out) in enumerate(self.sizes):
            self.register_parameter(f"weight{i}", nn.Parameter(torch.zeros(replicas, fan_out, fan_in)))
            self.register_parameter(f"bias{i}", nn.Parameter(torch.zeros(replicas, fan_out)))
        self.pack()

    @torch.no_grad()
    def pack(self) -> None:
        """Lay all parameters out in one contiguous buffer (layer by layer, each a contiguous block), and their
        gradients in another: optimizers and averagers then update the whole model with one kernel each.
        Call again after ``.to()`` or after replacing parameters."""
        params = list(self.parameters())
        pack_(params)
        grads = [torch.zeros_like(p) for p in params]
        pack_(grads)
        for param, grad in zip(params, grads):
            param.grad = grad

    @torch.no_grad()
    def select_replicas(self, index: torch.Tensor) -> None:
        """Keep only the replicas at ``index`` (re-packed)."""
        for param in self.parameters():
            param.data = param.data.index_select(0, index.to(param.device))
            param.grad = None
        self.pack()

    @property
    def replicas(self) -> int:
        """The number of stacked replicas (it shrinks when the trainer drops stopped ones)."""
        return self.weight0.shape[0]

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(W: (R, out, in), b: (R, out))`` for every layer."""
        return [(getattr(self, f"weight{i}"), getattr(self, f"bias{i}")) for i in range(len(self.sizes))]

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

    @torch.no_grad()
    def loss_and_grad(self, x: torch.Tensor, y: torch.Tensor, masks: Sequence[torch.Tensor] | None) -> torch.Tensor:
        """Per-replica MSE loss ``(R,)`` of a training batch; writes every parameter's ``.grad`` (see :meth:`pack`).

        The backward pass of ``Linear → ReLU → ·mask`` written out (what autograd computes, without its per-op
        bookkeeping, which costs more than the arithmetic at this size): with ``h = z·D``, ``D = (z > 0)·mask``,
        ``∂L/∂W = gᵀh_prev``, ``∂L/∂b = Σ g``, ``g_prev = (g W)·D_prev``, starting from ``g = 2(out − y)/B``.
        ``D = mask`` where ``h > 0`` and 0 elsewhere, since ``h = relu(z)·mask`` is positive exactly there.
        """
        layers = self.layers()
        inputs = [x]
        h = x
        for i, (weight, bias) in enumerate(layers):
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            if i < len(layers) - 1:
                h = h.relu_()
                if masks is not None:
                    h = h.mul_(masks[i])
                inputs.append(h)
        err = h.sub_(y)
        g = err * (2.0 / err[0].numel())
        for i in range(len(layers) - 1, -1, -1):
            weight, bias = layers[i]
            torch.bmm(g.transpose(1, 2), inputs[i], out=weight.grad)
            torch.sum(g, dim=1, out=bias.grad)
            if i > 0:
                g = torch.bmm(g, weight)
                if masks is not None:
                    g = g.mul_(masks[i - 1])
                # h = relu(z)·mask is > 0 exactly where both z > 0 and mask > 0: ReLU's own backward kernel
                g = torch.ops.aten.threshold_backward(g, inputs[i], 0)
        return err.square_().mean(dim=(1, 2))
