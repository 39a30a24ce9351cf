"""The seed's network trained without autograd: the loss gradient of ``Linear → ReLU → ·mask`` stacks, written out.

For seed 001's model (20-64-32-1, ReLU, dropout, MSE) one training step is a few tiny matmuls, and autograd's
per-op bookkeeping costs more than the arithmetic: ~0.45 ms per step for forward and backward here against
~0.08 ms written out (``emabench bench``). :func:`loss_and_grad` is used only for what it covers
(:func:`covers`: an ``mlp`` with ReLU, no normalisation, the MSE loss, nothing added to it, fp32, one micro-batch),
and ``tests/test_fast_mlp.py`` holds it equal to the autograd path, gradients and whole training histories.

With ``h = relu(z)·mask``, ``D = mask where h > 0 else 0``: ``∂L/∂W = gᵀh_prev``, ``∂L/∂b = Σ_batch g``,
``g_prev = (g W)·D_prev``, starting from the MSE's ``g = 2(out − y)/B``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from emabench.stack.layers import StackedDropout, StackedLinear
from emabench.stack.models import StackedNet


def covers(net: nn.Module, *, task: str, activation: str, norm: str, extras: bool) -> bool:
    """Whether :func:`loss_and_grad` computes this network's training gradient (``extras``: a teacher term,
    label smoothing, autocast or gradient accumulation, which it does not)."""
    if not isinstance(net, StackedNet) or extras or task != "regression" or activation != "relu" or norm != "none":
        return False
    kinds = [type(m) for m in net]
    return all(k in (StackedLinear, nn.ReLU, StackedDropout) for k in kinds) and kinds[-1] is StackedLinear


@torch.no_grad()
def loss_and_grad(
    net: StackedNet, x: torch.Tensor, y: torch.Tensor, dropout_masks: Sequence[torch.Tensor] = ()
) -> torch.Tensor:
    """Per-replica MSE loss ``(R,)`` of a training batch ``x`` ``(R, B, in)``; writes every parameter's ``.grad``
    (overwritten, not accumulated). ``dropout_masks``: one per dropout layer of the net, in order (none: no
    dropout)."""
    linears, masks = _layout(net, dropout_masks)
    inputs = [x]
    h = x
    last = len(linears) - 1
    for i, layer in enumerate(linears):
        h = torch.baddbmm(layer.bias.unsqueeze(1), h, layer.weight.transpose(1, 2))
        if i < last:
            h = h.relu_()
            if masks[i] is not None:
                h = h.mul_(masks[i])
            inputs.append(h)
    err = h.sub_(y)
    g = err * (2.0 / err[0].numel())
    for i in range(last, -1, -1):
        layer = linears[i]
        torch.bmm(g.transpose(1, 2), inputs[i], out=layer.weight.grad)
        torch.sum(g, dim=1, out=layer.bias.grad)
        if i > 0:
            g = torch.bmm(g, layer.weight)
            if masks[i - 1] is not None:
                g = g.mul_(masks[i - 1])
            # h = relu(z)·mask is > 0 exactly where both z > 0 and mask > 0: ReLU's own backward kernel
            g = torch.ops.aten.threshold_backward(g, inputs[i], 0)
    return err.square_().mean(dim=(1, 2))


def _layout(
    net: StackedNet, dropout_masks: Sequence[torch.Tensor]
) -> tuple[list[StackedLinear], dict[int, torch.Tensor | None]]:
    """The net's linear layers, and the dropout mask applied after each hidden one (by linear index)."""
    linears: list[StackedLinear] = []
    masks: dict[int, torch.Tensor | None] = {}
    given = iter(dropout_masks)
    for module in net:
        if isinstance(module, StackedLinear):
            linears.append(module)
            masks[len(linears) - 1] = None
        elif isinstance(module, StackedDropout):
            masks[len(linears) - 1] = next(given, None)
    return linears, masks
