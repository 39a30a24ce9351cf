"""Stacked models: R independent networks of one architecture, built from the layers of :mod:`.layers`.

:class:`StackedNet` is an ``nn.Sequential`` of stacked layers whose input is one batch per replica
``(R, B, *sample_shape)`` (or one batch ``(B, *sample_shape)`` shared by all replicas) and whose output is
``(R, B, out_features)``. Its parameters live in one contiguous buffer (and their gradients in another), so an
optimizer step, a gradient clear or an average update is one kernel over the whole stack.

Two architectures, each initialised replica by replica from that replica's own ``torch.Generator`` in layer order
(exactly what ``nn.init.*_(w, generator=g)`` on the plain layers gives):

- :func:`mlp`: ``Linear → [Norm] → activation → Dropout`` per hidden layer, then ``Linear`` (seed 001's network is
  ``mlp([64, 32], relu, dropout 0.2, norm none)``);
- :func:`lenet`: seed 003's LeNet (PaddlePaddle's ``paddle.vision.models.LeNet``): ``Conv(1→6, 3×3, pad 1) → ReLU →
  MaxPool 2 → Conv(6→16, 5×5) → ReLU → MaxPool 2 → Linear(·, 120) → Linear(120, 84) → Linear(84, classes)``;
  Paddle's has no activation between its linear layers (``fc_activation: none`` keeps that), and for inputs
  smaller than 28×28 the second convolution is padded (``5×5, pad 2``) so that 8×8 digits keep a 2×2 map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from emabench.averaging.flat import pack_
from emabench.stack.layers import (
    Flatten,
    StackedBatchNorm,
    StackedConv2d,
    StackedDropout,
    StackedLayerNorm,
    StackedLinear,
    StackedMaxPool2d,
)
from emabench.stack.layers import activation as activation_module

INITS = ("xavier_normal", "xavier_uniform", "kaiming_uniform", "torch_default")


class StackedNet(nn.Sequential):
    """A sequence of stacked layers; every parameter and buffer has the replica dimension first."""

    def __init__(self, replicas: int, sample_shape: Sequence[int], layers: Sequence[nn.Module]) -> None:
        super().__init__(*layers)
        self.sample_shape = tuple(sample_shape)
        self._replicas = replicas

    @property
    def replicas(self) -> int:
        """The number of stacked replicas (it shrinks when stopped replicas are dropped)."""
        return self._replicas

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - see the class docstring
        if tuple(x.shape[1:]) == self.sample_shape:  # one batch for all replicas (evaluation)
            x = x.unsqueeze(0).expand(self._replicas, *x.shape)
        return super().forward(x)

    def dropouts(self) -> list[StackedDropout]:
        return [m for m in self if isinstance(m, StackedDropout)]

    @torch.no_grad()
    def pack(self) -> None:
        """Lay all parameters out in one contiguous buffer (each parameter a contiguous block), and their gradients
        in another. Call again after ``.to()`` or after replacing parameters."""
        pack_with_grads(list(self.parameters()))

    @torch.no_grad()
    def select_replicas(self, index: torch.Tensor) -> None:
        """Keep only the replicas at ``index`` (parameters re-packed)."""
        for module in self.modules():
            for param in list(module.parameters(recurse=False)):
                param.data = param.data.index_select(0, index.to(param.device))
                param.grad = None
            for name, buffer in list(module.named_buffers(recurse=False)):
                module._buffers[name] = buffer.index_select(0, index.to(buffer.device))
        self._replicas = int(index.numel())
        self.pack()


def mlp(
    replicas: int,
    sample_shape: Sequence[int],
    out_features: int,
    hidden_sizes: Sequence[int],
    *,
    activation: str = "relu",
    norm: str = "none",
    dropout: bool = True,
) -> StackedNet:
    """``[Flatten] → (Linear → [Norm] → activation → [Dropout]) × len(hidden_sizes) → Linear``.

    A Linear followed by BatchNorm has no bias (the usual ``bias=False``): BatchNorm subtracts the batch mean, so that
    bias would get an exactly-zero gradient, and an adaptive optimizer turns the rounding noise in it into steps of
    size lr — a parameter that drifts at random without changing the function.
    """
    layers: list[nn.Module] = [Flatten()] if len(sample_shape) > 1 else []
    width = math.prod(sample_shape)
    for size in hidden_sizes:
        layers.append(StackedLinear(replicas, width, size, bias=norm != "batch"))
        if norm == "batch":
            layers.append(StackedBatchNorm(replicas, size))
        elif norm == "layer":
            layers.append(StackedLayerNorm(replicas, size))
        elif norm != "none":
            raise ValueError(f"norm must be one of none, batch, layer, got {norm!r}")
        layers.append(activation_module(activation))
        if dropout:
            layers.append(StackedDropout((size,)))
        width = size
    layers.append(StackedLinear(replicas, width, out_features))
    return StackedNet(replicas, sample_shape, layers)


def lenet(
    replicas: int,
    sample_shape: Sequence[int],
    out_features: int,
    *,
    channels: Sequence[int] = (6, 16),
    fc_sizes: Sequence[int] = (120, 84),
    activation: str = "relu",
    fc_activation: str = "none",
    dropout: bool = False,
) -> StackedNet:
    """Seed 003's LeNet (see the module docstring) for images ``(C, H, W)``; ``dropout`` after each hidden linear."""
    if len(sample_shape) != 3:
        raise ValueError(f"lenet needs image inputs (channels, height, width), got samples of shape {sample_shape}")
    c, h, w = sample_shape
    second_padding = 0 if min(h, w) >= 28 else 2
    layers: list[nn.Module] = [
        StackedConv2d(replicas, c, channels[0], 3, padding=1),
        activation_module(activation),
        StackedMaxPool2d(2),
        StackedConv2d(replicas, channels[0], channels[1], 5, padding=second_padding),
        activation_module(activation),
        StackedMaxPool2d(2),
        Flatten(),
    ]
    side = [(s // 2 + 2 * second_padding - 4) // 2 for s in (h, w)]
    if min(side) < 1:
        raise ValueError(f"lenet: images of {h}x{w} are too small (at least 8x8)")
    width = channels[1] * side[0] * side[1]
    for size in fc_sizes:
        layers.append(StackedLinear(replicas, width, size))
        if fc_activation != "none":
            layers.append(activation_module(fc_activation))
        if dropout:
            layers.append(StackedDropout((size,)))
        width = size
    layers.append(StackedLinear(replicas, width, out_features))
    return StackedNet(replicas, sample_shape, layers)


@torch.no_grad()
def init_parameters(net: StackedNet, generators: Sequence[torch.Generator], init: str) -> None:
    """Initialise every replica from its own generator, layer by layer, as the plain layers would be.

    ``xavier_normal`` / ``xavier_uniform`` / ``kaiming_uniform`` (ReLU gain): weights from the generator, biases 0
    (seed 001's choice); ``torch_default``: what ``nn.Linear``/``nn.Conv2d`` do on construction
    (``kaiming_uniform_(a=√5)`` weights, biases ``U(−1/√fan_in, 1/√fan_in)``). Norm layers start at 1 and 0.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if len(generators) != net.replicas:
        raise ValueError(f"need one generator per replica ({net.replicas}), got {len(generators)}")
    weighted = [m for m in net.modules() if isinstance(m, (StackedLinear, StackedConv2d))]
    for r, generator in enumerate(generators):
        for layer in weighted:
            weight = torch.empty(layer.weight.shape[1:])
            _init_weight(weight, init, generator)
            layer.weight[r].copy_(weight)
            if layer.bias is None:
                continue
            if init == "torch_default":
                bound = 1.0 / math.sqrt(weight[0].numel()) if weight[0].numel() > 0 else 0.0
                bias = torch.empty(layer.bias.shape[1:])
                nn.init.uniform_(bias, -bound, bound, generator=generator)
                layer.bias[r].copy_(bias)
            else:
                layer.bias[r].zero_()


def _init_weight(weight: torch.Tensor, init: str, generator: torch.Generator) -> None:
    if init == "xavier_normal":
        nn.init.xavier_normal_(weight, generator=generator)
    elif init == "xavier_uniform":
        nn.init.xavier_uniform_(weight, generator=generator)
    elif init == "kaiming_uniform":
        nn.init.kaiming_uniform_(weight, nonlinearity="relu", generator=generator)
    else:  # torch_default
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)


@torch.no_grad()
def pack_with_grads(params: Sequence[torch.Tensor]) -> None:
    """``params`` moved into one contiguous buffer, in order, and given zero gradients laid out alike in another:
    what lets the averagers and the stepper update a whole stack with one kernel."""
    pack_(params)
    grads = [torch.zeros_like(p) for p in params]
    pack_(grads)
    for param, grad in zip(params, grads):
        param.grad = grad
