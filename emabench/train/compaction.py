"""Dropping the replicas that stopped from a stack, so the others train at the cost of their own number.

Every per-replica piece of a trainer is cut to the replicas kept, in the same order: the model's parameters and
buffers, the optimizer's state, each averager, the best states, a per-replica data set, and the lists of streams,
schedulers and stoppers. What a kept replica computes next does not depend on which others left (its rows are the
same; see ``tests/test_same_result.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from emabench.train import averagers as averaging

Trainer = Any  # emabench.train.loop.Trainer, which imports this module
# the trainer's lists with one entry per stack position
PER_REPLICA_LISTS = (
    "configs",
    "generators",
    "mask_generators",
    "plateaus",
    "stoppers",
    "swa_lr_start",
    "_last_lrs",
    "ids",
)


@torch.no_grad()
def keep_replicas(trainer: Trainer, keep: Sequence[int]) -> None:
    """Keep the stack positions ``keep`` (in order) of every per-replica piece of ``trainer``."""
    index = torch.tensor(list(keep), device=trainer.device)
    old = len(trainer.ids)
    trainer.model.select_replicas(index)
    trainer.stepper.select(index)
    trainer.data = trainer.data.rows(index)
    if trainer.best is not None:
        trainer.best.select(index)
    for averager in trainer.averagers.values():
        averaging.select_replicas(averager, index, old)
    for name in PER_REPLICA_LISTS:
        values = getattr(trainer, name)
        setattr(trainer, name, [values[p] for p in keep])
