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

from emabench.stack import batched
from emabench.stack.layers import StackedDropout, StackedLinear
from emabench.stack.models import StackedNet


def covers(net: nn.Module, *, task: str, activation: str, norm: str, extras: bool) -> bool:
    """Whether :func:`loss_and_grad` computes this network's training gradient (``extras``: a teacher term,
    label smoothing, autocast or gradient accumulation, which it does not)."""
    if not isinstance(net, StackedNet) or extras or task != "regression" or activation != "relu" or norm != "none":
        return False
    kinds = [type(m) for m in net]
    return all(k in (StackedLinear, nn.ReLU, StackedDropout) for k in kinds) and kinds[-1] is StackedLinear


def loss_and_grad(
    net: StackedNet, x: torch.Tensor, y: torch.Tensor, dropout_masks: Sequence[torch.Tensor] = ()
) -> torch.Tensor:
    """Per-replica MSE loss ``(R,)`` of a training batch ``x`` ``(R, B, in)``; writes every parameter's ``.grad``
    (overwritten, not accumulated). ``dropout_masks``: one per dropout layer of the net, in order (none: no
    dropout). A trainer keeps one :class:`WrittenOutGradient` instead (the net's layout read once)."""
    return WrittenOutGradient(net)(x, y, dropout_masks)


class WrittenOutGradient:
    """:func:`loss_and_grad` for one network, its layers looked up once: at a few µs a step, reading the layout and
    the modules' attributes again every step was a tenth of the seed model's whole step."""

    def __init__(self, net: StackedNet, block: int = 64) -> None:
        linears: list[StackedLinear] = []
        self._mask_after: list[int | None] = []  # per linear: which of the dropout masks follows it
        dropouts = 0
        for module in net:
            if isinstance(module, StackedLinear):
                linears.append(module)
                self._mask_after.append(None)
            elif isinstance(module, StackedDropout):
                self._mask_after[-1] = dropouts
                dropouts += 1
        self._params = [(m.weight, m.bias) for m in linears]  # the Parameters, whose data is updated in place
        self.block = block  # replicas a pass works on: the activations of a few dozen fit in this CPU's caches

    def __call__(self, x: torch.Tensor, y: torch.Tensor, dropout_masks: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        if torch.is_grad_enabled():  # a trainer calls it with autograd already off: no context per step
            with torch.no_grad():
                return self(x, y, dropout_masks)
        masks = [None if i is None or i >= len(dropout_masks) else dropout_masks[i] for i in self._mask_after]
        replicas = x.shape[0]
        if replicas <= self.block:
            return self._loss_and_grad(x, y, masks, [(w, b, w.grad, b.grad) for w, b in self._params])
        losses = []
        for start in range(0, replicas, self.block):
            rows = slice(start, start + self.block)
            layers = [(w[rows], b[rows], w.grad[rows], b.grad[rows]) for w, b in self._params]
            block_masks = [None if m is None else m[rows] for m in masks]
            losses.append(self._loss_and_grad(x[rows], y[rows], block_masks, layers))
        return torch.cat(losses)

    @staticmethod
    def _loss_and_grad(
        x: torch.Tensor,
        y: torch.Tensor,
        masks: list[torch.Tensor | None],
        layers: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        inputs = [x]
        h = x
        last = len(layers) - 1
        for i, (weight, bias, _, _) in enumerate(layers):
            h = batched.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            if i < last:
                h = h.relu_()
                if masks[i] is not None:
                    h = h.mul_(masks[i])
                inputs.append(h)
        err = h.sub_(y)
        g = err * (2.0 / (err.shape[1] * err.shape[2]))
        for i in range(last, -1, -1):
            weight, _, weight_grad, bias_grad = layers[i]
            batched.bmm_into(weight_grad, g.transpose(1, 2), inputs[i])
            torch.sum(g, dim=1, out=bias_grad)
            if i > 0:
                g = batched.bmm(g, weight)
                if masks[i - 1] is not None:
                    g = g.mul_(masks[i - 1])
                # h = relu(z)·mask is > 0 exactly where both z > 0 and mask > 0: ReLU's own backward kernel
                g = _RELU_BACKWARD(g, inputs[i], 0)
        return err.square_().mean(dim=(1, 2))


_RELU_BACKWARD = torch.ops.aten.threshold_backward.default
