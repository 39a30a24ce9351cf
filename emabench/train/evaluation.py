"""Evaluating a stack: a model's outputs and metrics on a set of samples, and each model's best validation state.

A data set's evaluation sets are shared by every replica (``x: (n, *sample)``, the model broadcasts them), or one per
replica (``split: per_seed``: ``x: (R, n, *sample)``); either way every metric is per replica, ``(R,)``.

:class:`BestStates` keeps, for each model (raw and every per-epoch averager), a copy of its weights at each replica's
lowest validation loss so far: the state the early-stopped protocols measure on the test set once, at the end. It is
kept only when the data has a test set, and it is part of a replica's checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from emabench.stack import rows
from emabench.tasks.base import Task

EVAL_CHUNK = 4096  # samples per forward pass (bounds memory for big stacks and data sets)


@torch.no_grad()
def outputs(
    model: nn.Module, x: torch.Tensor, per_replica: bool, autocast: contextlib.AbstractContextManager | None = None
) -> torch.Tensor:
    """``model`` 's outputs ``(R, n, outputs)`` (float32) on ``x``, in eval mode, ``EVAL_CHUNK`` samples at a time."""
    was_training = model.training
    model.eval()
    chunks = x.split(EVAL_CHUNK, dim=1 if per_replica else 0)
    with autocast or contextlib.nullcontext():
        out = torch.cat([model(chunk).float() for chunk in chunks], dim=1)
    model.train(was_training)
    return out


def metrics(
    task: Task, model: nn.Module, x: torch.Tensor, y: torch.Tensor, per_replica: bool, autocast: Any = None
) -> dict[str, torch.Tensor]:
    """The task's metrics ``{metric: (R,)}`` of ``model`` on ``(x, y)``."""
    return task.evaluate(outputs(model, x, per_replica, autocast), y)


def training_batches(x_train: torch.Tensor, batch_size: int, per_replica: bool) -> Iterator[torch.Tensor]:
    """The training inputs in their stored order, in batches (BatchNorm re-estimation for ``recalibrate``)."""
    yield from x_train.split(batch_size, dim=1 if per_replica else 0)


class BestStates:
    """Each model's weights at each replica's lowest validation loss so far (see the module).

    ``stacked``: the models' tensors have the replica dimension first (a user's module, one replica, has not).
    """

    def __init__(self, models: dict[str, nn.Module], replicas: int, *, stacked: bool = True) -> None:
        self.stacked = stacked
        self.copies = {name: _frozen_copy(model) for name, model in models.items()}
        self.loss = {name: torch.full((replicas,), math.inf, dtype=torch.float64) for name in models}
        self.epoch = {name: torch.zeros(replicas, dtype=torch.long) for name in models}

    @torch.no_grad()
    def observe(self, models: dict[str, nn.Module], losses: dict[str, torch.Tensor], epoch: int) -> None:
        """Keep the rows of every model whose validation loss ``losses[name]`` ``(R,)`` is its replica's lowest so
        far (a NaN never is)."""
        for name, model in models.items():
            loss = losses[name].detach().double().cpu()
            improved = loss < self.loss[name]
            if not bool(improved.any()):
                continue
            index = improved.nonzero().flatten()
            kept = self.copies[name].state_dict()
            for key, value in model.state_dict().items():
                if not self.stacked:
                    kept[key].copy_(value)
                else:
                    kept[key].index_copy_(0, index.to(value.device), value.index_select(0, index.to(value.device)))
            self.loss[name][index] = loss[index]
            self.epoch[name][index] = epoch

    @torch.no_grad()
    def select(self, index: torch.Tensor) -> None:
        """Keep the replicas at ``index`` (the stack has dropped the others)."""
        for name, model in self.copies.items():
            model.select_replicas(index)
            self.loss[name] = self.loss[name].index_select(0, index.cpu())
            self.epoch[name] = self.epoch[name].index_select(0, index.cpu())

    def replica_state(self, position: int, size: int) -> dict[str, Any]:
        """Replica ``position`` 's rows (for its checkpoint)."""
        return {
            name: {
                "state": rows.rows(model.state_dict(), position, size) if self.stacked else model.state_dict(),
                "loss": float(self.loss[name][position]),
                "epoch": int(self.epoch[name][position]),
            }
            for name, model in self.copies.items()
        }

    @torch.no_grad()
    def load(self, states: list[dict[str, Any]]) -> None:
        """Inverse of :meth:`replica_state`, one state per stack position."""
        for name, model in self.copies.items():
            parts = [state[name] for state in states]
            model.load_state_dict(rows.stack_rows([p["state"] for p in parts]) if self.stacked else parts[0]["state"])
            self.loss[name] = torch.tensor([p["loss"] for p in parts], dtype=torch.float64)
            self.epoch[name] = torch.tensor([p["epoch"] for p in parts], dtype=torch.long)


def _frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` that never trains: no gradients kept, ``requires_grad`` off."""
    frozen = copy.deepcopy(model)
    for param in frozen.parameters():
        param.grad = None
        param.requires_grad_(False)
    return frozen
