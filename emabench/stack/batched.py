"""Batched matrix products whose result for one replica does not depend on how many replicas share the call.

``torch.bmm`` over a batch of one takes another BLAS path than over a batch of several: on this CPU (MKL) a
``(B, K) @ (K, 1)`` product is a gemv alone and a batched gemm in a stack, and with more than one thread a single
product may be split between threads where a batch is split by item. Both round differently, so a run trained alone
would drift from the same run trained in a stack. Here a batch of one is computed as a batch of two views of the same
matrices (``expand``: no copy) and the first result kept, so every replica goes through the batched path whatever
the stack size. The cost is a second, discarded product for stacks of one.

The inputs' own strides are kept (a transposed view stays a transposed view): the batched path's kernel depends on
them too, and they are the same for every replica of a stack.

>>> a, b = torch.ones(1, 3, 2), torch.ones(1, 2, 4)
>>> bmm(a, b).shape
torch.Size([1, 3, 4])
"""

from __future__ import annotations

import torch


def _pair(t: torch.Tensor) -> torch.Tensor:
    return t.expand(2, *t.shape[1:])


def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.bmm(a, b)``, a batch of one computed as a batch of two."""
    if a.shape[0] != 1:
        return torch.bmm(a, b)
    return torch.bmm(_pair(a), _pair(b))[:1]


def baddbmm(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.baddbmm(c, a, b)`` (``c`` broadcast over the products), a batch of one computed as a batch of two."""
    if a.shape[0] != 1:
        return torch.baddbmm(c, a, b)
    return torch.baddbmm(_pair(c), _pair(a), _pair(b))[:1]


def bmm_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.bmm(a, b, out=out)``, a batch of one computed as a batch of two (then copied into ``out``)."""
    if a.shape[0] != 1:
        return torch.bmm(a, b, out=out)
    return out.copy_(torch.bmm(_pair(a), _pair(b))[:1])
