"""R copies of a user's own ``nn.Module`` trained as one, with ``torch.func`` (PyTorch's "Model ensembling" recipe).

``stack_module_state`` stacks the copies' parameters and buffers along a new first dimension; the forward pass is
``vmap(functional_call(module, (params, buffers), x))`` over that dimension, so the user's ``forward`` runs unchanged
on each replica's rows. Like :class:`~emabench.stack.models.StackedNet`, every parameter and buffer has the replica
dimension first, so torch's optimizers, the averagers and per-replica checkpoints work on it as on the built-in
stacks; BatchNorm's running statistics are per replica (its buffers are stacked and updated in place under ``vmap``).

The contract, unlike the built-in stacks': a replica equals its run alone within float rounding, not bit for bit
(``vmap`` batches the module's operations, and torch picks kernels by their batch), and a module that draws random
numbers (dropout) draws them per replica from torch's global generator (``randomness="different"``): the same in
distribution as alone, not the same masks. A module ``vmap`` cannot run (data-dependent control flow, ``.item()``,
in-place updates of its inputs) is found by :func:`emabench.train.custom.vmap_problem` and trained one run at a time
instead.

>>> copies = [torch.nn.Linear(3, 2) for _ in range(4)]
>>> VmapStack(copies, (3,))(torch.zeros(4, 5, 3)).shape
torch.Size([4, 5, 2])
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from emabench.stack.models import pack_with_grads


def _safe(name: str) -> str:
    return name.replace(".", "__")


class VmapStack(nn.Module):
    """R copies of one ``nn.Module`` class (built by the caller, one per replica) as one stacked model: input
    ``(R, B, *sample_shape)`` (or ``(B, *sample_shape)`` for every replica), output ``(R, B, outputs)``."""

    def __init__(self, modules: Sequence[nn.Module], sample_shape: Sequence[int]) -> None:
        super().__init__()
        params, buffers = stack_module_state(list(modules))
        self._names = (list(params), list(buffers))
        self.stacked = nn.ParameterDict({_safe(k): nn.Parameter(v.detach().clone()) for k, v in params.items()})
        for name, value in buffers.items():
            self.register_buffer(_safe(name), value.detach().clone())
        self._base = [copy.deepcopy(modules[0]).to("meta")]  # a list keeps it out of the module tree and state_dict
        self.sample_shape = tuple(sample_shape)

    @property
    def replicas(self) -> int:
        return next(iter(self.stacked.values())).shape[0]

    def train(self, mode: bool = True) -> VmapStack:
        self._base[0].train(mode)  # the user's layers read it (dropout, BatchNorm)
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = tuple(x.shape[1:]) == self.sample_shape  # one batch for every replica (evaluation)
        params = {name: self.stacked[_safe(name)] for name in self._names[0]}
        buffers = {name: self._buffers[_safe(name)] for name in self._names[1]}
        batched = vmap(self._call, in_dims=(0, 0, None if shared else 0), randomness="different")
        return batched(params, buffers, x)

    def _call(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self._base[0], (params, buffers), (x,))

    def dropouts(self) -> list[nn.Module]:
        return []  # the module's own dropout draws, per replica, from torch's global generator

    @torch.no_grad()
    def pack(self) -> None:
        """Parameters in one buffer and their gradients in another, as
        :meth:`emabench.stack.models.StackedNet.pack` (the averagers' and the stepper's one-kernel paths)."""
        pack_with_grads(list(self.parameters()))

    @torch.no_grad()
    def select_replicas(self, index: torch.Tensor) -> None:
        """Keep only the replicas at ``index`` (parameters re-packed)."""
        for param in self.parameters():
            param.data = param.data.index_select(0, index.to(param.device))
            param.grad = None
        for name, buffer in list(self._buffers.items()):
            self._buffers[name] = buffer.index_select(0, index.to(buffer.device))
        self.pack()
