"""An epoch's training batches, from tensors (:func:`emabench.train.batches.draw_epoch`) or from a user's Dataset read
through a ``DataLoader`` (``data: {source: dataset}``, :class:`LoaderEpoch`).

From a Dataset, every replica draws its epoch exactly as from tensors — ``randperm(n)`` from its own generator (what
``DataLoader(shuffle=True)`` 's ``RandomSampler`` draws with that generator) and its dropout masks from its mask
stream (:func:`~emabench.train.batches.draw_orders`) — and its batches are consecutive slices of that order. One
``DataLoader`` per epoch reads them all, step by step, replica by replica (its ``num_workers`` processes serve the
whole stack), each batch under its own seed from ``(run seed, epoch, batch)``
(:func:`emabench.tasks.datasets.batch_seed`): what a replica reads does not depend on its stack, the workers, or a
resume. For a Dataset without randomness the batches equal those of the same samples held as tensors
(``fetch: once``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from emabench.tasks.datasets import TrainSet, batch_seed, loader
from emabench.train.batches import EpochOrder, batch_bounds, draw_epoch, draw_orders

Trainer = Any  # emabench.train.loop.Trainer, which imports this module


class LoaderEpoch:
    """One epoch of every replica read from a :class:`~emabench.tasks.datasets.TrainSet`: ``order`` ``(R, n)``
    sample indices, ``seeds`` each replica's run seed, ``masks`` ``(R, n, *unit)`` dropout multipliers."""

    def __init__(
        self,
        train_set: TrainSet,
        order: torch.Tensor,
        seeds: Sequence[int],
        epoch: int,
        masks: list[np.ndarray],
        device: torch.device,
        drop_last: bool = False,
    ) -> None:
        self.train_set, self.order, self.seeds, self.epoch = train_set, order, list(seeds), epoch
        self.masks = [torch.from_numpy(m).to(device, non_blocking=True) for m in masks]
        self.device, self.drop_last = device, drop_last

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]]:
        """``(x (R, B, *sample), y (R, B, …), masks)`` per step."""
        bounds = batch_bounds(self.order.shape[1], batch_size, self.drop_last)
        plan = [
            (batch_seed(seed, self.epoch, b), self.order[r, start:end].tolist())
            for b, (start, end) in enumerate(bounds)
            for r, seed in enumerate(self.seeds)
        ]
        read = iter(loader(self.train_set.dataset, plan, self.train_set.classification, self.train_set.num_workers))
        for start, end in bounds:
            parts = [next(read) for _ in self.seeds]
            x = torch.stack([p[0] for p in parts]).to(self.device, non_blocking=True)
            y = torch.stack([p[1] for p in parts]).to(self.device, non_blocking=True)
            yield x, y, [m[:, start:end] for m in self.masks]

    def samples(self, batch_size: int) -> int:
        """How many samples of each replica the epoch trains on."""
        return sum(end - start for start, end in batch_bounds(self.order.shape[1], batch_size, self.drop_last))


def epoch_order(trainer: Trainer) -> EpochOrder | LoaderEpoch:
    """The trainer's next epoch: every replica's order, dropout masks and batches."""
    data = trainer.data
    mask_shapes = [d.sample_shape for d in trainer._dropouts]
    drop_last = getattr(trainer.configs[0].data, "drop_last", False)
    if data.train_set is None:
        order = draw_epoch(
            trainer.generators,
            trainer.mask_generators,
            data.x_train,
            data.y_train,
            mask_shapes,
            trainer._keep,
            trainer._epoch_buffers,
            per_replica=data.per_replica,
        )
        order.drop_last = drop_last
        return order
    n = len(data.train_set)
    order, masks = draw_orders(
        trainer.generators, trainer.mask_generators, n, mask_shapes, trainer._keep, trainer._epoch_buffers
    )
    seeds = [c.seed for c in trainer.configs]
    return LoaderEpoch(data.train_set, order, seeds, trainer.epoch, masks, trainer.device, drop_last)


def training_inputs(trainer: Trainer) -> Iterator[torch.Tensor]:
    """The training inputs in their stored order, in batches of ``train.batch_size`` (BatchNorm re-estimation for
    ``buffers: recalibrate``); a Dataset's read under the same fixed seeds every time."""
    batch = trainer.configs[0].train.batch_size
    data = trainer.data
    if data.train_set is None:
        yield from data.x_train.split(batch, dim=1 if data.per_replica else 0)
        return
    train_set, n = data.train_set, len(data.train_set)
    plan = [(batch_seed(0, 0, b), list(range(s, min(s + batch, n)))) for b, s in enumerate(range(0, n, batch))]
    for x, _ in loader(train_set.dataset, plan, train_set.classification, train_set.num_workers):
        yield x.to(trainer.device)
