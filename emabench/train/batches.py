"""An epoch's randomness, per replica: the shuffled order of the training set and the dropout masks.

Each replica has two streams of its own, both derived from its config's ``seed`` and saved in its checkpoint:

- a ``torch.Generator`` (seeded with ``seed``; it also initialised the weights) draws the epoch's ``randperm(n)``;
- a numpy ``PCG64`` generator (:func:`mask_generator`) draws the dropout masks: 16 random bits per unit, kept when
  they are below ``round(keep · 2¹⁶)``, then scaled by ``1/keep`` as ``nn.Dropout`` does. The keep probability is
  ``keep`` to within ``2⁻¹⁷`` (``7.6e-6``; ``nn.Dropout``'s float draws are within ``2⁻²⁴``), and 16 bits a unit
  cost about a tenth of torch's float draw per unit, which at hundreds of stacked replicas is most of an epoch's
  randomness.

So what a replica sees does not depend on which other replicas share its stack, and a run continues
bit-identically from its checkpoint. Batches are consecutive slices of the epoch's order (the last partial batch
kept, as ``DataLoader(shuffle=True)``); with gradient accumulation each batch is cut again into micro-batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

MASK_BITS = 16
_MASK_STREAM = 0x6D61736B  # "mask": a second stream from the same seed, apart from torch's


@dataclass
class EpochOrder:
    """One epoch of every replica: inputs ``(R, n, *sample)``, targets ``(R, n, …)``, masks ``(R, n, *unit)``;
    ``drop_last``: the last partial batch left out (``data.drop_last`` of a Dataset source)."""

    x: torch.Tensor
    y: torch.Tensor
    masks: list[torch.Tensor]
    drop_last: bool = False

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]]:
        for start, end in batch_bounds(self.x.shape[1], batch_size, self.drop_last):
            yield self.x[:, start:end], self.y[:, start:end], [m[:, start:end] for m in self.masks]

    def samples(self, batch_size: int) -> int:
        """How many samples of each replica the epoch trains on."""
        return sum(end - start for start, end in batch_bounds(self.x.shape[1], batch_size, self.drop_last))


def batch_bounds(n: int, batch_size: int, drop_last: bool = False) -> list[tuple[int, int]]:
    """``(start, end)`` of each batch of an epoch of ``n`` samples (the last partial one kept unless ``drop_last``)."""
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    return bounds[:-1] if drop_last and bounds and bounds[-1][1] - bounds[-1][0] < batch_size else bounds


def mask_generator(seed: int) -> np.random.Generator:
    """The dropout-mask stream of a run with this ``seed``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _MASK_STREAM])))


def keep_masks(
    generator: np.random.Generator, shape: tuple[int, ...], keep: float, out: np.ndarray | None = None
) -> np.ndarray:
    """A boolean array of ``shape`` (written into ``out`` if given), each entry ``True`` with probability
    ``round(keep·2¹⁶)/2¹⁶``."""
    out = np.empty(shape, dtype=bool) if out is None else out
    if keep >= 1:
        out.fill(True)
        return out
    count = math.prod(shape)
    words = generator.integers(0, 2**64 - 1, size=-(-count // 4), dtype=np.uint64, endpoint=True)
    bits = words.view(np.uint16)[:count].reshape(shape)
    np.less(bits, np.uint16(min(round(keep * 2**MASK_BITS), 2**MASK_BITS - 1)), out=out)
    return out


def scaled_masks(generator: np.random.Generator, shape: tuple[int, ...], keep: float, out: np.ndarray) -> None:
    """Dropout's multipliers, ``1/keep`` where :func:`keep_masks` keeps a unit and ``0`` elsewhere, written into the
    float32 array ``out``: the comparison of the 16 random bits, times ``float32(1/keep)`` (numpy; ~4x faster here
    than looking the bits up in a table, which widens every index to 64 bits first)."""
    if keep >= 1:
        out.fill(1.0)
        return
    np.multiply(keep_masks(generator, shape, keep), np.float32(1.0 / keep), out=out)


class EpochBuffers:
    """Where :func:`draw_epoch` writes, kept from one epoch to the next: at hundreds of replicas an epoch's masks
    are hundreds of MB, and memory freshly mapped every epoch cost more page faults than the draws themselves."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._tensors: dict[str, torch.Tensor] = {}

    def array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in self._arrays or self._arrays[name].shape != shape:
            self._arrays[name] = np.empty(shape, dtype=np.float32)
        return self._arrays[name]

    def like(self, name: str, source: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        kept = self._tensors.get(name)
        if kept is None or kept.shape != shape or kept.dtype != source.dtype or kept.device != source.device:
            kept = self._tensors[name] = torch.empty(shape, dtype=source.dtype, device=source.device)
        return kept


def draw_epoch(
    generators: Sequence[torch.Generator],
    mask_generators: Sequence[np.random.Generator],
    x: torch.Tensor,
    y: torch.Tensor,
    mask_shapes: Sequence[tuple[int, ...]],
    keep: Sequence[float],
    buffers: EpochBuffers | None = None,
    *,
    per_replica: bool = False,
) -> EpochOrder:
    """Shuffle ``x``/``y`` (on their device) and draw the dropout masks of every replica from its own streams.

    ``keep`` is ``1 − p`` per replica; a replica with ``p = 0`` draws no masks (all ones), as it would alone, where its
    network has no dropout layer to draw for. With ``buffers`` the epoch is written into the previous one's memory
    (which it overwrites). ``per_replica``: ``x``/``y`` hold one training set per replica (``(R, n, …)``); replica r
    shuffles its own.
    """
    buffers = buffers or EpochBuffers()
    replicas = len(generators)
    if per_replica:  # replica r's samples are rows r·n … r·n + n − 1 of the flattened sets
        n = x.shape[1]
        x, y = x.reshape(replicas * n, *x.shape[2:]), y.reshape(replicas * n, *y.shape[2:])
    else:
        n = x.shape[0]
    order, masks = draw_orders(generators, mask_generators, n, mask_shapes, keep, buffers)
    if per_replica:
        order += torch.arange(replicas).view(-1, 1) * n
    index = order.to(x.device, non_blocking=True).view(-1)
    xs = torch.index_select(x, 0, index, out=buffers.like("x", x, (replicas * n, *x.shape[1:])))
    ys = torch.index_select(y, 0, index, out=buffers.like("y", y, (replicas * n, *y.shape[1:])))
    return EpochOrder(
        xs.view(replicas, n, *x.shape[1:]),
        ys.view(replicas, n, *y.shape[1:]),
        [torch.from_numpy(m).to(x.device, non_blocking=True) for m in masks],
    )


def draw_orders(
    generators: Sequence[torch.Generator],
    mask_generators: Sequence[np.random.Generator],
    n: int,
    mask_shapes: Sequence[tuple[int, ...]],
    keep: Sequence[float],
    buffers: EpochBuffers,
) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Each replica's ``randperm(n)`` from its generator ``(R, n)`` and its dropout masks ``(R, n, *unit)`` (float32
    multipliers, in ``buffers``) from its mask stream: an epoch's draws, whatever reads the samples."""
    replicas = len(generators)
    order = torch.empty(replicas, n, dtype=torch.long)
    masks = [buffers.array(f"mask{i}", (replicas, n, *shape)) for i, shape in enumerate(mask_shapes)]
    for r, generator in enumerate(generators):
        torch.randperm(n, generator=generator, out=order[r])
        for mask, shape in zip(masks, mask_shapes):
            scaled_masks(mask_generators[r], (n, *shape), keep[r], out=mask[r])
    return order, masks


def micro_batches(size: int, parts: int) -> list[tuple[int, int]]:
    """``(start, end)`` of ``parts`` nearly equal consecutive pieces of a batch of ``size`` (empty ones dropped)."""
    bounds = [round(i * size / parts) for i in range(parts + 1)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
