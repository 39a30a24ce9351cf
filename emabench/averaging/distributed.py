"""Weight averaging under data-parallel and sharded training (seed 000 §4.2): checks and two cheaper designs.

The averagers themselves need nothing distributed. Under ``DistributedDataParallel`` every rank holds the same
weights after each optimizer step, so an averager built on each rank (on the DDP wrapper or its module: the wrapper is
unwrapped) stays identical everywhere without any communication; :func:`verify_consistent` checks that it did. Its
``state_dict`` holds plain tensors and no rank count: saved from rank 0 it loads on any world size, or in a single
process. Under FSDP2 (``fully_shard``) or with DTensor parameters, each rank keeps and updates only its shard of the
average (see :mod:`emabench.averaging.sharded`).

One trap the check finds: DDP broadcasts buffers from rank 0 only at the start of the next forward, so right after
an optimizer step each rank holds the BatchNorm running statistics of its own batch, and an averager that averages
or copies them differs across ranks. Use ``SyncBatchNorm`` (CUDA), or re-estimate the statistics of the average with
:func:`~emabench.averaging.update_bn` on the same batches on every rank before evaluating it.

Seed 000 proposes two other designs, both here for when every rank holding an average is not wanted:

- :class:`CentralEMA`, a "global EMA server": one rank holds the average and receives the weights every k steps;
- :class:`MergedAverages`, an "asynchronous EMA": every rank averages its own weights and the averages are
  all-reduced to their mean every k steps.

Every function here is a collective over ``group`` (default: the whole world): call it on every rank, in the same
order. ``torch.distributed`` must be initialised.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn

from emabench.averaging.base import Averager, unwrap
from emabench.averaging.checks import check_decay, check_dtype, check_int, checked_step

CHECKSUM_WIDTH = 3  # float64 sum, sum of squares, and a position-weighted sum (a hash that notices permutations)


def checksum(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``[Σx, Σx², Σx·w]`` in float64 over all ``tensors``, ``w`` a fixed position-dependent weight per element."""
    total = torch.zeros(CHECKSUM_WIDTH, dtype=torch.float64)
    offset = 0
    for tensor in tensors:
        x = tensor.detach().reshape(-1).to("cpu", torch.float64)
        weights = torch.sin(torch.arange(offset, offset + x.numel(), dtype=torch.float64) * 0.7071) + 1.5
        total += torch.stack([x.sum(), (x * x).sum(), (x * weights).sum()])
        offset += x.numel()
    return total


def verify_consistent(averager: Averager, group: dist.ProcessGroup | None = None, *, raise_error: bool = True):
    """Check that ``averager`` holds the same state on every rank: its average, buffers and counters.

    All ranks all-gather a checksum (:func:`checksum`) of the averager's ``state_dict`` tensors; the ranks whose
    checksum differs from rank 0's are returned (``[]``: consistent), or named in a ``RuntimeError`` when
    ``raise_error``. Shards of a sharded average (DTensors) differ by design and are left out: their placement is
    checked by the sharding itself.
    """
    state = averager.state_dict()
    tensors = [v for k, v in state.items() if isinstance(v, torch.Tensor) and type(v) is torch.Tensor]
    mine = torch.cat([checksum(tensors), torch.tensor([float(len(tensors))], dtype=torch.float64)])
    world = dist.get_world_size(group)
    everyone = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(everyone, mine, group=group)
    differing = [rank for rank, theirs in enumerate(everyone) if not torch.equal(theirs, everyone[0])]
    if differing and raise_error:
        raise RuntimeError(
            f"{type(averager).__name__} differs across ranks: ranks {differing} do not match rank 0 "
            f"(checksums {[everyone[r].tolist() for r in differing]} vs {everyone[0].tolist()})"
        )
    return differing


def _global_weights(model: nn.Module, owner: int, group: dist.ProcessGroup | None) -> dict[str, torch.Tensor]:
    """The model's floating parameters as full tensors: DTensors gathered, replicated ones averaged over ranks (a
    reduce to ``owner``). Only ``owner``'s result is meaningful."""
    world = dist.get_world_size(group)
    weights = {}
    for name, param in model.named_parameters():
        if not param.is_floating_point():
            continue
        if type(param.data) is not torch.Tensor and hasattr(param, "full_tensor"):
            full = param.detach().full_tensor()
        else:
            full = param.detach().clone()
            dist.reduce(full, dst=dist.get_global_rank(group, owner) if group else owner, group=group)
            full.div_(world)
        weights[name] = full
    return weights


class CentralEMA(nn.Module):
    """Seed 000's "global EMA server": one rank (``owner``) holds the EMA of the whole model; the others hold nothing.

    At steps ``t = 1, k+1, 2k+1, …`` (``k = sync_every``; ``t`` the optimizer step passed to ``update(t)``, or the
    number of calls) every rank sends its weights and the owner folds them in with the decay of the steps since its
    last sync, so the horizon is the per-step EMA's:

        ``average ← β^Δ·average + (1 − β^Δ)·θ_t``,  ``Δ = t − t_last`` (the first sync copies).

    "Its weights": a sharded (DTensor) parameter is gathered, a replicated one is reduced to its mean over the ranks
    (under DDP that is every rank's own copy). Communication and arithmetic happen once per k steps, and only the owner
    pays the memory of a full average. The price is drift from the exact per-step EMA ``e``: with ``δ`` the largest
    change of a weight in one step, at a sync

        ``|average − e| ≤ δ·(1 − β)·Σ_{i<k} i·β^i / (1 − β^k) ≤ δ·(k − 1)/(2·β^(k−1))``

    (the average folds in θ_t for steps whose own weights it never saw). :meth:`broadcast` sends the held average to
    every rank, as of the last sync.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        beta: float,
        sync_every: int,
        owner: int = 0,
        group: dist.ProcessGroup | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.beta = float(check_decay(beta))
        self.sync_every = check_int("sync_every", sync_every, 1)
        self.owner = check_int("owner", owner, 0)
        if self.owner >= dist.get_world_size(group):
            raise ValueError(f"owner must be a rank of the group (0 to {dist.get_world_size(group) - 1}), got {owner}")
        self.group = group
        self.dtype = check_dtype(dtype)
        self._online = [unwrap(model)]
        self.average: dict[str, torch.Tensor] | None = None  # the owner's, after the first sync
        self.register_buffer("step", torch.tensor(0))
        self.register_buffer("last_sync", torch.tensor(0))

    @property
    def is_owner(self) -> bool:
        return dist.get_rank(self.group) == self.owner

    @torch.no_grad()
    def update(self, step: int | None = None) -> None:
        """After each optimizer step, on every rank; a sync (collective) at steps 1, k+1, 2k+1, …"""
        last = int(self.step)
        step = last + 1 if step is None else checked_step(step, last)
        self.step.fill_(step)
        k = self.sync_every
        if (step - 1) // k == (last - 1) // k:
            return
        weights = _global_weights(self._online[0], self.owner, self.group)
        delta = step - int(self.last_sync)
        self.last_sync.fill_(step)
        if not self.is_owner:
            return
        weight = 1.0 - self.beta**delta if self.average is not None else 1.0
        if self.average is None:
            self.average = {k: v.to(self.dtype) for k, v in weights.items()}
            return
        for name, value in weights.items():
            self.average[name].lerp_(value.to(self.dtype), weight)

    @torch.no_grad()
    def broadcast(self) -> dict[str, torch.Tensor]:
        """Every rank gets the owner's average (as of the last sync), as ``{parameter name: full tensor}``."""
        if int(self.last_sync) == 0:
            raise RuntimeError("CentralEMA holds no average before its first sync (update at step 1)")
        out = {}
        source = dist.get_global_rank(self.group, self.owner) if self.group else self.owner
        for name, param in self._online[0].named_parameters():
            if param.is_floating_point():
                tensor = self.average[name].clone() if self.is_owner else torch.empty(param.shape, dtype=self.dtype)
                dist.broadcast(tensor, src=source, group=self.group)
                out[name] = tensor
        return out

    def get_extra_state(self) -> dict:
        return {"average": self.average}

    def set_extra_state(self, state: dict) -> None:
        self.average = state["average"]


class MergedAverages(nn.Module):
    """Seed 000's "asynchronous EMA": each rank averages its own weights, and the averages are merged every k steps.

    ``averager`` is any averager built on this rank's model; it updates without communication. At steps
    ``1, k+1, 2k+1, …`` (``k = merge_every``, after the averager's own update of that step) every rank all-reduces
    the averager's state tensors (its averages, accumulators, post-hoc profiles) to their mean over the ranks and
    continues from it, so the ranks agree again.

    The rules of the EMA family and SWA are linear in the weights: with one schedule on every rank, the mean of the
    ranks' averages *is* the average of the ranks' mean weights, so a merge loses nothing. Between merges rank r's
    average drifts from that exact one by at most ``(1 − β^j)·max_t |θ_r,t − θ̄_t|`` after ``j`` steps (an EMA gives
    the last ``j`` steps a total weight of ``1 − β^j``): ranks whose weights differ (local SGD, asynchronous or
    noisy replicas) pay that; under DDP, where every rank holds the same weights, there is nothing to drift.
    A merge first checks that all ranks reached the same step.
    """

    def __init__(self, averager: Averager, *, merge_every: int, group: dist.ProcessGroup | None = None) -> None:
        super().__init__()
        self.averager = averager
        self.merge_every = check_int("merge_every", merge_every, 1)
        self.group = group

    def update(self, step: int | None = None) -> None:
        """Update this rank's averager; at steps 1, k+1, 2k+1, … also merge (a collective)."""
        last = self.averager.num_updates
        self.averager.update(step)
        step, k = self.averager.num_updates, self.merge_every
        if (step - 1) // k != (last - 1) // k:
            self.merge()

    @torch.no_grad()
    def merge(self) -> None:
        """All-reduce every state tensor of the averager to its mean over the ranks."""
        step = torch.tensor([float(self.averager.num_updates)], dtype=torch.float64)
        steps = [torch.empty_like(step) for _ in range(dist.get_world_size(self.group))]
        dist.all_gather(steps, step, group=self.group)
        if len({float(s) for s in steps}) != 1:
            raise RuntimeError(f"cannot merge averages taken at different steps: {[int(s) for s in steps]}")
        world = dist.get_world_size(self.group)
        for tensor in state_tensors(self.averager):
            dist.all_reduce(tensor, group=self.group)
            tensor.div_(world)

    def forward(self, *args, **kwargs):
        return self.averager(*args, **kwargs)


def state_tensors(averager: Averager) -> list[torch.Tensor]:
    """The floating tensors that hold an averager's running state: the averaged tensors of it and of every averager
    inside it (post-hoc profiles), and accumulators (bias-corrected EMA); local shards for a sharded model."""
    tensors = []
    for module in averager.modules():
        if isinstance(module, Averager):
            tensors += module._local_tensors(module._modules["averaged_model"])
            accumulator = getattr(module, "accumulator", None)
            if isinstance(accumulator, nn.Module):
                tensors += module._local_tensors(accumulator)
    return tensors


def drift_bound_central(beta: float, sync_every: int, max_step_change: float) -> float:
    """:class:`CentralEMA`'s bound on ``|average − per-step EMA|`` at a sync (see its docstring)."""
    k = sync_every
    if k == 1:
        return 0.0
    spread = (1.0 - beta) * sum(i * beta**i for i in range(k)) / (1.0 - beta**k)
    return max_step_change * spread if math.isfinite(spread) else math.inf
