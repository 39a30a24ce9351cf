"""An epoch's randomness, per replica: the shuffled order of the training set and the dropout masks.

Each replica draws from its own ``torch.Generator`` (seeded with its config's ``seed``), in this order per epoch:
``randperm(n)``, then for every dropout layer ``rand(n, *sample_shape)``; the mask is ``(u < 1 − p)/(1 − p)``, a
fresh Bernoulli(1 − p)/(1 − p) mask per sample and unit, as ``nn.Dropout(p)`` draws. So what a replica sees does not
depend on which other replicas share its stack, and a run continues bit-identically from a checkpoint of its
generator's state.

Batches are consecutive slices of the epoch's order (the last partial batch kept, as ``DataLoader(shuffle=True)``);
with gradient accumulation each batch is cut again into micro-batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch


@dataclass
class EpochOrder:
    """One epoch of every replica: inputs ``(R, n, *sample)``, targets ``(R, n, …)``, masks ``(R, n, *unit)``."""

    x: torch.Tensor
    y: torch.Tensor
    masks: list[torch.Tensor]

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]]:
        n = self.x.shape[1]
        for start in range(0, n, batch_size):
            end = min(start + batch_size, n)
            yield self.x[:, start:end], self.y[:, start:end], [m[:, start:end] for m in self.masks]


def draw_epoch(
    generators: Sequence[torch.Generator],
    x: torch.Tensor,
    y: torch.Tensor,
    mask_shapes: Sequence[tuple[int, ...]],
    keep: torch.Tensor,
) -> EpochOrder:
    """Shuffle ``x``/``y`` (on their device) and draw the dropout masks for every replica from its generator.

    ``keep`` is ``1 − p`` per replica, ``(R,)``; a replica with ``p = 0`` draws no masks and gets all-ones ones, as
    it would alone (where its network has no dropout layer to draw for).
    """
    n, replicas = x.shape[0], len(generators)
    order = torch.empty(replicas, n, dtype=torch.long)
    uniforms = [torch.empty(replicas, n, *shape) for shape in mask_shapes]
    dropping = (keep < 1).tolist()
    for r, generator in enumerate(generators):
        torch.randperm(n, generator=generator, out=order[r])
        for uniform in uniforms:
            if dropping[r]:
                uniform[r].uniform_(generator=generator)
            else:
                uniform[r].zero_()  # u = 0 < keep = 1: every unit kept
    masks = []
    for uniform in uniforms:
        scale = keep.view(-1, *[1] * (uniform.dim() - 1))
        masks.append((uniform < scale).to(uniform.dtype).div_(scale).to(x.device, non_blocking=True))
    index = order.to(x.device, non_blocking=True).view(-1)
    xs = x.index_select(0, index).view(replicas, n, *x.shape[1:])
    ys = y.index_select(0, index).view(replicas, n, *y.shape[1:])
    return EpochOrder(xs, ys, masks)


def micro_batches(size: int, parts: int) -> list[tuple[int, int]]:
    """``(start, end)`` of ``parts`` nearly equal consecutive pieces of a batch of ``size`` (empty ones dropped)."""
    bounds = [round(i * size / parts) for i in range(parts + 1)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
