"""Stacked layers: R independent copies of a torch layer trained as one, replica dimension first.

Every parameter and buffer has a leading dimension R, and every activation is laid out ``(R, B, *features)``: row
``r`` of everything is replica ``r``, and nothing mixes rows, so a replica in a stack computes what the same layer
alone would (the contract ``tests/test_stack_layers.py`` checks against R plain torch layers, forward and backward).
The design follows yandex-research/tabm's ``LinearEnsemble`` / ``BatchNorm1dEnsemble`` / ``LayerNormEnsemble``
(one normalisation over ``R·features`` channels keeps running statistics per replica), with the replica dimension
first and dropout masks drawn outside (each replica from its own ``torch.Generator``, see :class:`StackedDropout`).

Each layer has ``from_modules`` (stack R plain layers, copying their weights) and ``replica(r)`` (the plain layer of
replica r), which is what the equality tests use.

>>> layer = StackedLinear(3, 4, 2)
>>> layer(torch.zeros(3, 5, 4)).shape
torch.Size([3, 5, 2])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from emabench.stack import batched


def _check_input(x: torch.Tensor, replicas: int, trailing: tuple[int, ...], layer: str) -> None:
    expected = (replicas, -1, *trailing)
    if x.dim() != len(expected) or x.shape[0] != replicas or tuple(x.shape[2:]) != trailing:
        shape = ", ".join("B" if d == -1 else str(d) for d in expected)
        raise ValueError(f"{layer}: expected input of shape ({shape}), got {tuple(x.shape)}")


class StackedLinear(nn.Module):
    """R ``nn.Linear(in_features, out_features)``: weight ``(R, out, in)``, bias ``(R, out)``.

    ``y[r] = x[r] @ weight[r]ᵀ + bias[r]`` as one batched matmul.
    """

    def __init__(self, replicas: int, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(replicas, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(replicas, out_features)) if bias else None

    @property
    def replicas(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.replicas, (self.in_features,), "StackedLinear")
        if self.bias is None:
            return batched.bmm(x, self.weight.transpose(1, 2))
        return batched.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))

    @classmethod
    @torch.no_grad()
    def from_modules(cls, layers: Sequence[nn.Linear]) -> StackedLinear:
        first = layers[0]
        stacked = cls(len(layers), first.in_features, first.out_features, first.bias is not None)
        stacked.weight.copy_(torch.stack([m.weight for m in layers]))
        if stacked.bias is not None:
            stacked.bias.copy_(torch.stack([m.bias for m in layers]))
        return stacked

    @torch.no_grad()
    def replica(self, r: int) -> nn.Linear:
        layer = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        layer.weight.copy_(self.weight[r])
        if self.bias is not None:
            layer.bias.copy_(self.bias[r])
        return layer


class StackedConv2d(nn.Module):
    """R ``nn.Conv2d``: weight ``(R, out, in, kh, kw)``, bias ``(R, out)``; input ``(R, B, in, H, W)``.

    One ``F.conv2d`` per replica, outputs stacked. A grouped convolution over the replicas side by side
    (``groups=R``) was ~1.2× faster for LeNet at R = 40 on this CPU, but oneDNN picks its algorithm by the number
    of groups, so a replica's outputs changed in their last bits with the stack size (measured: stacks of 1 and 3
    each differed from stacks of 2, 4, 8, … 65), and a run trained alone drifted from the same run in a sweep.
    Replica by replica, every call has the same shapes whatever the stack, so it rounds alike.
    """

    def __init__(
        self, replicas: int, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.weight = nn.Parameter(torch.empty(replicas, out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(replicas, out_channels))

    @property
    def replicas(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        replicas = self.replicas
        if x.dim() != 5 or x.shape[0] != replicas or x.shape[2] != self.in_channels:
            raise ValueError(
                f"StackedConv2d: expected input of shape ({replicas}, B, {self.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        last = torch.channels_last  # oneDNN's fast layout; its pooling and backward are several times faster there
        # unbind, not x[r]: its backward stacks the R gradients once instead of adding R zero-padded copies
        replicas = zip(x.unbind(0), self.weight.unbind(0), self.bias.unbind(0))
        outs = [
            F.conv2d(x_r.contiguous(memory_format=last), w.contiguous(memory_format=last), b, self.stride, self.padding)
            for x_r, w, b in replicas
        ]
        # stacked as (R, B, H', W', out) and viewed as (R, B, out, H', W'): channels last, as each output came
        return torch.stack([o.permute(0, 2, 3, 1) for o in outs]).permute(0, 1, 4, 2, 3)

    @classmethod
    @torch.no_grad()
    def from_modules(cls, layers: Sequence[nn.Conv2d]) -> StackedConv2d:
        first = layers[0]
        stacked = cls(
            len(layers), first.in_channels, first.out_channels, first.kernel_size[0], first.stride[0], first.padding[0]
        )
        stacked.weight.copy_(torch.stack([m.weight for m in layers]))
        stacked.bias.copy_(torch.stack([m.bias for m in layers]))
        return stacked

    @torch.no_grad()
    def replica(self, r: int) -> nn.Conv2d:
        layer = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding)
        layer.weight.copy_(self.weight[r])
        layer.bias.copy_(self.bias[r])
        return layer


class StackedBatchNorm(nn.Module):
    """R ``nn.BatchNorm1d(features)`` (input ``(R, B, F)``) or ``nn.BatchNorm2d`` (input ``(R, B, C, H, W)``).

    Batch statistics, the running mean/variance ``(R, features)`` and the affine weight and bias ``(R, features)``
    are per replica; ``num_batches_tracked`` is ``(R,)`` so that every buffer has the replica dimension first. One
    ``F.batch_norm`` per replica: over ``R·features`` channels side by side (tabm's ``BatchNorm1dEnsemble``) the
    kernel's vector lanes and tails fall on other channels as R changes, and a replica's statistics changed in
    their last bits with the stack size (measured at 10 features: a stack of 1 differed from every other).
    """

    def __init__(self, replicas: int, features: int, *, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        super().__init__()
        self.features, self.eps, self.momentum = features, eps, momentum
        self.weight = nn.Parameter(torch.ones(replicas, features))
        self.bias = nn.Parameter(torch.zeros(replicas, features))
        self.register_buffer("running_mean", torch.zeros(replicas, features))
        self.register_buffer("running_var", torch.ones(replicas, features))
        self.register_buffer("num_batches_tracked", torch.zeros(replicas, dtype=torch.long))

    @property
    def replicas(self) -> int:
        return self.weight.shape[0]

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        replicas = self.replicas
        if x.dim() not in (3, 5) or x.shape[0] != replicas or x.shape[2] != self.features:
            raise ValueError(
                f"StackedBatchNorm: expected input of shape ({replicas}, B, {self.features}[, H, W]), "
                f"got {tuple(x.shape)}"
            )
        momentum = self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative average, as torch's BatchNorm with momentum=None (update_bn uses it)
                momentum = 1.0 / float(self.num_batches_tracked[0])
        momentum = 0.0 if momentum is None else momentum
        # one F.batch_norm per replica, each updating its own rows of the running statistics in place
        rows = zip(x.unbind(0), self.running_mean, self.running_var, self.weight.unbind(0), self.bias.unbind(0))
        return torch.stack(
            [F.batch_norm(x_r, mean, var, w, b, self.training, momentum, self.eps) for x_r, mean, var, w, b in rows]
        )

    @classmethod
    @torch.no_grad()
    def from_modules(cls, layers: Sequence[nn.modules.batchnorm._BatchNorm]) -> StackedBatchNorm:
        first = layers[0]
        stacked = cls(len(layers), first.num_features, eps=first.eps, momentum=first.momentum)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(stacked, name).copy_(torch.stack([getattr(m, name) for m in layers]))
        stacked.num_batches_tracked.copy_(torch.stack([m.num_batches_tracked for m in layers]))
        return stacked

    @torch.no_grad()
    def replica(self, r: int, dims: int = 1) -> nn.modules.batchnorm._BatchNorm:
        layer = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(self.features, eps=self.eps, momentum=self.momentum)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(layer, name).copy_(getattr(self, name)[r])
        layer.num_batches_tracked.copy_(self.num_batches_tracked[r])
        return layer


class StackedLayerNorm(nn.Module):
    """R ``nn.LayerNorm(features)`` over the last dimension: weight and bias ``(R, features)``."""

    def __init__(self, replicas: int, features: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        self.features, self.eps = features, eps
        self.weight = nn.Parameter(torch.ones(replicas, features))
        self.bias = nn.Parameter(torch.zeros(replicas, features))

    @property
    def replicas(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.replicas, (self.features,), "StackedLayerNorm")
        normalized = F.layer_norm(x, (self.features,), eps=self.eps)
        return torch.addcmul(self.bias.unsqueeze(1), normalized, self.weight.unsqueeze(1))

    @classmethod
    @torch.no_grad()
    def from_modules(cls, layers: Sequence[nn.LayerNorm]) -> StackedLayerNorm:
        first = layers[0]
        stacked = cls(len(layers), first.normalized_shape[0], eps=first.eps)
        stacked.weight.copy_(torch.stack([m.weight for m in layers]))
        stacked.bias.copy_(torch.stack([m.bias for m in layers]))
        return stacked

    @torch.no_grad()
    def replica(self, r: int) -> nn.LayerNorm:
        layer = nn.LayerNorm(self.features, eps=self.eps)
        layer.weight.copy_(self.weight[r])
        layer.bias.copy_(self.bias[r])
        return layer


class StackedDropout(nn.Module):
    """Dropout with an explicit mask per replica: ``y = x · mask`` while training, ``y = x`` in eval mode.

    The trainer sets ``self.mask`` (``(R, B, *sample_shape)``, entries ``0`` or ``1/(1 − p_r)``) before each forward,
    drawn from each replica's own generator, so a replica's masks do not depend on which other replicas share its
    stack. Without a mask (``None``) the layer is the identity, also in training mode.
    """

    def __init__(self, sample_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.sample_shape = tuple(sample_shape)
        self.mask: torch.Tensor | None = None

    def set_mask(self, mask: torch.Tensor | None) -> None:
        """Set the mask for the next forward passes (a plain attribute: no ``nn.Module.__setattr__`` checks, which
        cost more than the multiply at the seed's size)."""
        self.__dict__["mask"] = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.mask is None:
            return x
        return x * self.mask


class StackedMaxPool2d(nn.Module):
    """``nn.MaxPool2d(kernel_size)`` applied to every replica: input ``(R, B, C, H, W)``."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        replicas, batch = x.shape[:2]
        # every replica's images as one batch (R·B, C, H, W): a view of the convolutions' output, pooled as it lies
        pooled = F.max_pool2d(x.reshape(replicas * batch, *x.shape[2:]), self.kernel_size)
        return pooled.view(replicas, batch, *pooled.shape[1:])


class Flatten(nn.Module):
    """``(R, B, *features)`` → ``(R, B, prod(features))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)


class ReplicaWise(nn.Module):
    """A plain element-wise module applied to each replica's rows on their own: ``stack([f(x[r]) for r])``.

    For activations whose vectorised kernel body and scalar tail round differently (``silu`` measurably, here), an
    element's value depends on where it lies in the tensor the kernel walks; replica by replica, every replica's
    tensor has the shape and layout it has alone. ReLU is exact either way and runs on the whole stack.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.module(x_r) for x_r in x.unbind(0)])


def activation(name: str) -> nn.Module:
    """The stacked activation ``name``: ``relu`` on the whole stack, the others replica by replica."""
    if name == "relu":
        return nn.ReLU()
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return ReplicaWise(ACTIVATIONS[name]())


ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
